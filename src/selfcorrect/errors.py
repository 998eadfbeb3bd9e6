"""One exception type for every user-facing problem: the CLI prints its message on one line."""


class SelfCorrectError(Exception):
    """A problem with the user's input or environment (not a bug): shown as a one-line error."""


def unknown_choice(kind: str, value: str, choices) -> SelfCorrectError:
    valid = ", ".join(sorted(choices))
    return SelfCorrectError(f"unknown {kind} '{value}' (valid: {valid})")
