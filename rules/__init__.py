"""Rules: case clocks (electronic supervision) and patrol state, fed by the sink.

Every rule meets :class:`rules.contract.Rule` and is one line of the table
:data:`rules.registry.RULES`. A rule is a thin stateful shell around pure
functions of (state, observation, now) that return the new state and alert
events; nothing here reads the wall clock.
"""
