"""Rules: case clocks (electronic supervision) and patrol state, fed by the sink.

Each rule is a pure function of (state, observation, now) returning the new
state and alert events; nothing here reads the wall clock.
"""
