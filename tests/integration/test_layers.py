"""The layers of DESIGN.md: store <- claim <- pool <- run <- cli/capi. A file of one layer
includes headers of its own layer or of layers below it, never above; and the CLI reaches the
claimers and pools only through the runner (src/run), never by including them."""
import os
import re
import unittest

SRC = os.path.join(os.environ.get("MPMUX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))
ORDER = ["store", "claim", "pool", "run", "cli"]
RANK = {name: i for i, name in enumerate(ORDER)}
RANK["capi"] = RANK["cli"]

# Which layer each public header belongs to.
PUBLIC = {
    "error.hpp": "store", "export.hpp": "store", "element_set.hpp": "store", "session.hpp": "store",
    "journal.hpp": "store", "results.hpp": "store",
    "mpi.hpp": "claim", "rma_claimer.hpp": "claim",
    "worker_program.hpp": "pool",
    "run.hpp": "run", "runner.hpp": "run", "command.hpp": "run", "multiplexer.hpp": "run", "plugin.h": "run",
    "mpmux.h": "capi",
    # Implementation detail the pool templates need (include/mpmux/bits/).
    "bits/map_driver.hpp": "pool", "bits/pool_engine.hpp": "pool", "bits/thread_engine.hpp": "pool",
    "bits/process_engine.hpp": "pool",
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def public_headers():
    """Every header under include/mpmux/, as its path below it ("pool_map.hpp", "bits/...")."""
    root = os.path.join(SRC, "include", "mpmux")
    for folder, _, files in os.walk(root):
        for name in files:
            yield os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")


def layer_of_public(name):
    if name in PUBLIC:
        return PUBLIC[name]
    if name.startswith(("pool", "thread_pool", "process_pool")):
        return "pool"
    return None


def layer_includes():
    """(layer, file name, included header, its layer) for every #include of a layer header in src/."""
    for layer in RANK:
        here = os.path.join(SRC, "src", layer)
        if not os.path.isdir(here):
            continue
        for name in sorted(os.listdir(here)):
            if not name.endswith((".cpp", ".hpp", ".h", ".c")):
                continue
            with open(os.path.join(here, name), encoding="utf-8") as f:
                text = f.read()
            for target in INCLUDE.findall(text):
                parts = target.split("/")
                if parts[0] == "mpmux" and len(parts) >= 2:
                    dep = layer_of_public("/".join(parts[1:]))
                elif parts[0] in RANK and len(parts) == 2:
                    dep = parts[0]
                else:
                    continue
                yield layer, name, target, dep


class Layers(unittest.TestCase):
    def test_every_public_header_has_a_layer(self):
        for name in public_headers():
            self.assertIsNotNone(layer_of_public(name), f"include/mpmux/{name} is in no layer of this test")

    def test_no_layer_includes_a_higher_one(self):
        checked = 0
        for layer, name, target, dep in layer_includes():
            checked += 1
            self.assertLessEqual(RANK[dep], RANK[layer],
                                 f"src/{layer}/{name} includes {target} of the higher layer {dep}")
        self.assertGreater(checked, 10)

    def test_the_cli_includes_nothing_of_the_pools_or_claimers(self):
        checked = 0
        for layer, name, target, dep in layer_includes():
            if layer != "cli":
                continue
            checked += 1
            self.assertNotIn(dep, ("pool", "claim"),
                             f"src/cli/{name} includes {target} of the {dep} layer: the CLI goes through src/run")
        self.assertGreater(checked, 5)

    def test_public_headers_include_only_their_layer_or_below(self):
        include = re.compile(r'^\s*#\s*include\s*"mpmux/([^"]+)"', re.M)
        for name in public_headers():
            with open(os.path.join(SRC, "include", "mpmux", name), encoding="utf-8") as f:
                text = f.read()
            for target in include.findall(text):
                self.assertLessEqual(RANK[layer_of_public(target)], RANK[layer_of_public(name)],
                                     f"include/mpmux/{name} includes the higher-layer {target}")


if __name__ == "__main__":
    unittest.main()
