"""The `fusionkit` command line: config loading, the commands, and the `up` supervisor."""
