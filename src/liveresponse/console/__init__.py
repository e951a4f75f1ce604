"""The analyst console: parser (protocol/commandline), renderer, shell, interactive REPL."""
