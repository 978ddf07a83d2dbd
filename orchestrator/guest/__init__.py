"""Libraries of the `guest` stage (orchestrator/stages/guest): the node layout, fact parsers,
the files a node holds (render) and SSH to it."""
