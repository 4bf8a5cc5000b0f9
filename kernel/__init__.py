"""The ground floor every stage stands on, free of any engine, framework or provider SDK: the topic
map, the records the stages exchange, keyed steps, time and schedules, settings, log masking and
the builders of the records people publish."""
