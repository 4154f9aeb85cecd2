#!/usr/bin/env cwl-runner
# A parameter sweep run by mpmux (docs/workflows.md): store the grid and open a session, run it
# under MPI, export its results. Run with cwltool's MPI extension and without containers:
#   cwltool --enable-ext --mpi-config-file mpi-config.yml --no-container --relax-path-checks \
#           --cachedir CACHE sweep.cwl sweep-job.yml
# (--cachedir: run again, a step that succeeded is not redone, so the run step resumes the session)
cwlVersion: v1.2
class: Workflow
doc: mpmux new + session, mpirun mpmux run, mpmux results
$namespaces:
  cwltool: "http://commonwl.org/cwltool#"
inputs:
  mux_root: string
  tag:
    type: string
    default: sweep
  grid: string[]
  ranks:
    type: int
    default: 3
  task: File
  exec: string
  run_options:
    type: string[]
    default: []
outputs:
  mux_id:
    type: string
    outputSource: run/session
  run_log:
    type: File
    outputSource: run/log
  results:
    type: File
    outputSource: export/results
steps:
  session:
    run: new_session.cwl
    in:
      mux_root: mux_root
      tag: tag
      grid: grid
    out: [mux_id]
  run:
    run: run.cwl
    in:
      mux_id: session/mux_id
      ranks: ranks
      task: task
      exec: exec
      run_options: run_options
    out: [session, log]
  export:
    run: results.cwl
    in:
      mux_id: run/session
    out: [results]
