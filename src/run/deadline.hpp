// End times for `mpmux run --deadline`, and the end of the Slurm job the run is part of.
#pragma once
#include <optional>
#include <string_view>

namespace mpmux::run {

/// Unix seconds for an ISO 8601 time (2026-11-22T02:10[:00], local time; a trailing Z or
/// +HH:MM offset is honoured) or a duration from now: +90, +90s, +15m, +2h, +1h30m, +1d.
/// Throws UsageError naming --deadline for anything else.
double parse_deadline(std::string_view text, double now_unix_seconds);

/// The end time of the Slurm job of this process (SLURM_JOB_ID), asked of `squeue`; nothing
/// when not in a Slurm job, when the job has no time limit, or when squeue cannot tell.
std::optional<double> slurm_job_end(double now_unix_seconds);

}  // namespace mpmux::run
