"""The central store's indexes for the course rules (a migration of central.MIGRATIONS).

Before a session starts a console asks for one patient's sessions on every console, with each
session's shots counted (courses.py). Without these indexes that reads and parses the JSON of
every shot of every console that treated the patient: about 1.4 s for 100,000 shots on the
2-core development machine, past the 3 s budget at a few hundred thousand, when the console
would refuse every session as "unreachable". With them it reads only the patient's rows.

The references are read from the body by fleet_ref/fleet_text (fleet_json: a `\\u0000` in
a device's text, which jsonb refuses, read as U+FFFD), which give NULL for a body that is not
JSON at all instead of raising: an index expression that raises would make the push of that
row fail. A console that treated the patient and holds such shots or sessions makes the
course question fail (courses.py: UNREADABLE_SQL), so the session is refused as for an
unreachable store rather than judged on fewer sessions than there are. Measured on the
development machine (2 cores shared, single runs, so rough): pushing 100,000 shots took
7.6-11.2 s without the indexes and 8.4-10.6 s with them (no difference beyond the noise);
the question for a patient whose console holds 100,000 shots took 1.4 s without and 0.05 s
with.
"""

from __future__ import annotations

COURSE_INDEXES: tuple[str, ...] = (
    # jsonb has no NUL character: a `\u0000` (in a device's text) is read as U+FFFD, which
    # changes no reference; a body that is not JSON at all still raises here
    """CREATE FUNCTION fleet_json(body text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT (CASE WHEN strpos(body, '\\u0000') > 0 THEN replace(body, '\\u0000', '\\ufffd')
             ELSE body END)::jsonb
$$""",
    """CREATE FUNCTION fleet_ref(body text, key text) RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN (fleet_json(body) ->> key)::bigint;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$""",
    """CREATE FUNCTION fleet_text(body text, key text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN fleet_json(body) ->> key;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$""",
    "CREATE INDEX fleet_patients_id ON fleet_rows (fleet_text(body, 'patient'))"
    " WHERE tbl = 'patients'",
    "CREATE INDEX fleet_sessions_patient ON fleet_rows (console_id, fleet_ref(body, 'patient'))"
    " WHERE tbl = 'sessions'",
    "CREATE INDEX fleet_courses_patient ON fleet_rows (console_id, fleet_ref(body, 'patient'))"
    " WHERE tbl = 'courses'",
    "CREATE INDEX fleet_shots_session ON fleet_rows (console_id, fleet_ref(body, 'session'))"
    " WHERE tbl = 'shots'",
    # a superset of the session ends (the text cannot occur inside a JSON string, whose
    # quotes are escaped); the query checks the kind itself
    "CREATE INDEX fleet_session_ends ON fleet_rows (console_id, fleet_ref(body, 'session'))"
    """ WHERE tbl = 'events' AND strpos(body, '"kind":"session_end"') > 0""",
    "CREATE INDEX fleet_course_decisions ON fleet_rows (console_id, row_id)"
    """ WHERE tbl = 'events' AND strpos(body, '"kind":"course_decision"') > 0""",
)
