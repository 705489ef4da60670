"""`testbed render`: every layer of the d = 2 transformer drawn in the plane, from a run's snapshots.

Modules: `rundata` (what a run directory holds), `sentences` (the probe sentences and their
colours and markers), `style` (colour wheel and shared styling), `quantities` (everything a frame
shows, computed once for many frames at a time), `figure` (grid layout, still frames, blitted
frames), `video` (parallel video writing), `spike_figures` (frames before and after each loss
spike), `command` (the command's logic). What a panel plugin implements is in
`testbed.plugin_api.panel`.
"""
