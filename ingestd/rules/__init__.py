"""Admins' YAML rules: conditions on the incoming mail, actions on its ticket.

    model.py       the shape of a rule file (validated, regexes compiled at load)
    load.py        rules_dir/*.yaml in file-name order; every problem with file and line
    view.py        what conditions look at, read from the message once
    conditions.py  does a rule's `match` hold (and its named captures)
    actions.py     what a matching rule does to the ticket plan
    plan.py        the ticket plan rules build and `apply` writes
    assign.py      the available agent of a team with the fewest open tickets
"""
