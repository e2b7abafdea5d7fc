"""One module per ``emguard`` subcommand, each with ``add_arguments(parser)`` and ``run(args) -> int``."""
