#!/usr/bin/env cwl-runner
# Runs a session under MPI: `mpmux run MUX_ID --exec TEMPLATE` on `ranks` processes, started by the
# runner of cwltool's --mpi-config-file (cwltool --enable-ext). Outputs the mux id again as
# `session`, so that the next step runs after this one, and `log`, rank 0's progress lines.
cwlVersion: v1.2
class: CommandLineTool
doc: mpirun -n RANKS mpmux run MUX_ID --exec TEMPLATE
$namespaces:
  cwltool: "http://commonwl.org/cwltool#"
requirements:
  cwltool:MPIRequirement:
    processes: $(inputs.ranks)
  # The task program is staged into the working directory, where the template names it.
  InitialWorkDirRequirement:
    listing:
      - $(inputs.task)
baseCommand: [mpmux, run]
inputs:
  mux_id:
    type: string
    inputBinding: {position: 1}
  ranks:
    type: int
    doc: MPI processes; rank 0 coordinates, the others run tasks
  task:
    type: File
    doc: the task program, staged as ./BASENAME
  exec:
    type: string
    doc: the --exec template, e.g. "./loss.sh {alpha} {beta} {seed}"; {name} is the element's field
    inputBinding: {prefix: --exec, position: 2}
  run_options:
    type: string[]
    default: []
    doc: more mpmux run options, e.g. [--retries, "2"]
    inputBinding: {position: 3}
stderr: run.log
# 75: mpmux stopped before the end (a signal, a deadline); what is left stays pending in the
# session, and running the same step again resumes it.
temporaryFailCodes: [75]
outputs:
  session:
    type: string
    outputBinding:
      outputEval: $(inputs.mux_id)
  log:
    type: stderr
