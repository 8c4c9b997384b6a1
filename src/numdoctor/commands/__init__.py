"""One module per subcommand; shared option helpers in _common."""
