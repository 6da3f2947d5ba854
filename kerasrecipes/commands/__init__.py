"""The subcommands of `kerasrecipes`, one module each, with a `run(args)` that does the work and
prints. `kerasrecipes.cli` parses the command line and imports the one module it needs, so
`--help` and `models` start without TensorFlow."""
