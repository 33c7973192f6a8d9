"""undertow's runtime: the command line, the embedded dev stack, and (soon) the Faust app."""
