#!/usr/bin/env cwl-runner
# Exports a session's results, one row per element with its fields, status, attempts and the task's
# stdout as `result`, to a CSV file (`mpmux results --format csv`).
cwlVersion: v1.2
class: CommandLineTool
doc: mpmux results MUX_ID --format csv -o results.csv
baseCommand: [mpmux, results]
arguments:
  - {prefix: --format, valueFrom: csv, position: 2}
  - {prefix: -o, valueFrom: results.csv, position: 3}
inputs:
  mux_id:
    type: string
    inputBinding: {position: 1}
outputs:
  results:
    type: File
    outputBinding: {glob: results.csv}
