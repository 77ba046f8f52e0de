"""Client-side commands: reading Segment JSON and talking to a running sidecar."""
