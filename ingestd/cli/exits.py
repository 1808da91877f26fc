"""Exit codes, from sysexits.h, so MTAs and systemd read our outcome correctly."""

OK = 0
USAGE = 64
DATAERR = 65  # some input was not mail
NOINPUT = 66  # an input file could not be read
UNAVAILABLE = 69
SOFTWARE = 70
OSERR = 71  # the operating system refused something at start-up
TEMPFAIL = 75  # storage failed: the MTA should retry
CONFIG = 78  # the configuration file is invalid
