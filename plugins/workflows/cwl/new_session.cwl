#!/usr/bin/env cwl-runner
# Stores a grid as an element set under mux_root (`mpmux new --grid`) and opens a read session on it
# (`mpmux session`); outputs the session's mux id.
cwlVersion: v1.2
class: CommandLineTool
doc: mpmux new MUX_ROOT --tag TAG --grid NAME=VALUES..., then mpmux session on the new set
requirements:
  InlineJavascriptRequirement: {}
# Two commands, run by sh -c with the inputs as its positional parameters: nothing of the user's
# text is pasted into the script, so spaces and quotes in it stay as they are.
baseCommand:
  - sh
  - -ec
  - 'root=$1; tag=$2; shift 2; dir=$(mpmux new "$root" --tag "$tag" --grid "$@"); mpmux session "$dir"'
  - sh
inputs:
  mux_root:
    type: string
    doc: where the set and its sessions are stored (a directory every node sees, or az://...)
    inputBinding: {position: 1}
  tag:
    type: string
    default: sweep
    inputBinding: {position: 2}
  grid:
    type: string[]
    doc: one NAME=VALUES per parameter, as `mpmux new --grid` takes them
    inputBinding: {position: 3}
stdout: mux_id.txt
outputs:
  mux_id:
    type: string
    outputBinding:
      glob: mux_id.txt
      loadContents: true
      outputEval: $(self[0].contents.trim())
