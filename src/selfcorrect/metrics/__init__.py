"""Pure functions from tidy outcome tables to metric tables with CIs."""
