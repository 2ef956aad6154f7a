"""One module per ``colorize`` subcommand, each with ``main(argv) -> exit code``."""
