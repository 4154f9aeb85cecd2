"""The scale model's logic (bench/scale/scale_model.py): small cases whose answer is known."""

import io
import math
import os
import sys
import unittest

sys.path.insert(
    0,
    os.path.join(
        os.environ.get("MPMUX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
        "bench",
        "scale",
    ),
)
import scale_model as m  # noqa: E402


def free_costs(**kw):
    """A calibration where nothing but the named costs takes time."""
    cal = m.Calibration(
        claim_us=0,
        claim_remote_us=0,
        atomic_us=0,
        root_us_per_record=0,
        root_us_per_message=0,
        journal_sync_ms=0,
        store_claim_ms=0,
        worker_us_per_element=0,
    )
    for k, v in kw.items():
        setattr(cal, k, v)
    return cal


class ScaleModelTest(unittest.TestCase):
    def test_one_worker_with_fixed_tasks_takes_n_times_t_plus_its_claims(self):
        cal = free_costs(claim_us=100, worker_us_per_element=10)
        sc = m.Scenario(ranks=2, task_s=0.01, sigma=0, elements=200, chunk=1)
        r = m.simulate(sc, cal)
        # 200 claims of 100 us and 200 elements of 10 ms + 10 us; the store costs nothing here.
        self.assertAlmostEqual(r.makespan_s, 200 * (0.01 + 10e-6 + 100e-6), places=9)
        self.assertAlmostEqual(r.ideal_s, 2.0)
        self.assertEqual(r.claims, 200)

    def test_the_store_s_latency_delays_the_first_element(self):
        r = m.simulate(
            m.Scenario(ranks=2, task_s=0.01, sigma=0, elements=10, chunk=1), free_costs(store_claim_ms=5)
        )
        self.assertAlmostEqual(r.makespan_s, 0.005 + 10 * 0.01, places=9)

    def test_guided_chunks_balance_the_tail_better_than_a_large_fixed_chunk(self):
        cal = m.Calibration()
        guided = m.simulate(m.Scenario(ranks=65, task_s=1.0, elements=64 * 40, sample_ranks=64), cal)
        fixed = m.simulate(m.Scenario(ranks=65, task_s=1.0, elements=64 * 40, chunk=32, sample_ranks=64), cal)
        self.assertLess(guided.imbalance, fixed.imbalance)
        self.assertLess(guided.imbalance, 1.25)

    def test_rank_0_saturates_when_records_per_second_times_their_cost_exceeds_one(self):
        # 100 workers, tasks of 10 ms, each outcome its own message: 10,000 records/s.
        for cost_us, saturated in ((50, False), (200, True)):
            cal = free_costs(root_us_per_record=cost_us, root_us_per_message=cost_us)
            load = m.root_load_steady(cal, 100, 0.01, 0)
            self.assertAlmostEqual(load, 10000 * cost_us * 1e-6)
            r = m.simulate(
                m.Scenario(ranks=101, task_s=0.01, sigma=0, elements=100 * 200, chunk=1, sample_ranks=100),
                cal,
            )
            self.assertEqual(r.root_drain_s > 0.5, saturated, (cost_us, r))
            self.assertAlmostEqual(r.root_load, min(1.0, load), delta=0.05)

    def test_the_coordinator_limit_is_where_the_steady_load_crosses_one(self):
        cal = m.Calibration()
        for workers in (999, 9999, 99999):
            limit = m.coordinator_limit_s(cal, workers, 0.5)
            self.assertGreater(m.root_load_steady(cal, workers, limit * 0.98, 0.5), 1.0)
            self.assertLess(m.root_load_steady(cal, workers, limit * 1.02, 0.5), 1.0)
        self.assertLess(m.coordinator_limit_s(cal, 999, 0.5), m.coordinator_limit_s(cal, 99999, 0.5))

    def test_a_serialized_counter_makes_a_simultaneous_start_wait(self):
        # 100 ranks claim at once from a counter that holds each fetch-and-op 1 ms: the k-th waits k ms.
        r = m.simulate(
            m.Scenario(ranks=101, task_s=1.0, sigma=0, elements=100, chunk=1, sample_ranks=100),
            free_costs(atomic_us=1000),
        )
        self.assertAlmostEqual(r.claim_wait_us, 1000 * 99 / 2, delta=1)

    def test_a_sampled_rank_stands_for_many_at_the_counter_and_rank_0(self):
        cal = m.Calibration()
        full = m.simulate(m.Scenario(ranks=1001, task_s=0.1, elements_per_worker=20, sample_ranks=1000), cal)
        sampled = m.simulate(
            m.Scenario(ranks=1001, task_s=0.1, elements_per_worker=20, sample_ranks=100), cal
        )
        self.assertAlmostEqual(sampled.claims / full.claims, 1, delta=0.25)
        self.assertAlmostEqual(sampled.root_load / full.root_load, 1, delta=0.15)
        self.assertAlmostEqual(sampled.imbalance, full.imbalance, delta=0.15)

    def test_a_sampled_rank_s_tail_is_the_latest_of_the_ranks_it_stands_for(self):
        # One element per rank: the run ends with the longest of 1,000 draws, sampled or not.
        def makespan(sample, seed):
            sc = m.Scenario(
                ranks=1001, task_s=1.0, sigma=0.5, elements=1000, chunk=1, sample_ranks=sample, seed=seed
            )
            return m.simulate(sc, free_costs()).makespan_s

        full = sum(makespan(1000, s) for s in range(5)) / 5
        sampled = sum(makespan(10, s) for s in range(5)) / 5
        self.assertAlmostEqual(sampled / full, 1, delta=0.25)
        self.assertGreater(full, 3.0)  # exp(-0.125 + 0.5 * 3.1): the 1 - 1/1000 quantile

    def test_outcomes_of_long_elements_travel_alone_and_short_ones_batched(self):
        self.assertEqual(m.messages_per_record(0.01, 0, 10, 0.1, 48), 1.0)
        self.assertAlmostEqual(m.messages_per_record(0.001, 0, 100, 0.1, 48), 2 / 100)
        # Mean 5 ms, sigma 0.5: the median is 5 ms * exp(-0.125), so P(X >= 5 ms) = P(Z >= 0.25).
        self.assertAlmostEqual(m.fraction_sent_at_once(0.005, 0.5), 0.5 * math.erfc(0.25 / math.sqrt(2)))

    def test_calibration_reads_the_drivers_names_and_keeps_defaults_for_the_rest(self):
        cal, origin = m.Calibration.from_lines(
            io.StringIO(
                "claimer_remote_us=12.5\nfile_claims_per_s_fsync=500\njournal_syncs_per_s=nan\nnoise\n"
            )
        )
        self.assertEqual(cal.claim_remote_us, 12.5)
        self.assertAlmostEqual(cal.store_claim_ms, 2.0)
        self.assertEqual(cal.journal_sync_ms, m.Calibration().journal_sync_ms)
        self.assertEqual(origin["claim_remote_us"], "claimer_remote_us")
        self.assertEqual(origin["journal_sync_ms"], "default")


if __name__ == "__main__":
    unittest.main()
