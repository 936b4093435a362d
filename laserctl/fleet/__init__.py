"""The clinic chain's central store: shipping each console's shot log to PostgreSQL and
checking it there (docs/fleet.md).

    central.py          the PostgreSQL schema, its migrations and its checks on arrival
    outbox.py           the console's rows and the outbox (what the store acknowledged)
    push.py             `laserctl fleet push`: batches, resume, refusals
    checkpoint_ship.py  the signed checkpoints shipped and checked against the stored rows
    status.py           `laserctl fleet status`: shipped, pending, verified per console
    background.py       the console's background pusher
    courses.py          the course rules across consoles: a patient's sessions on every
                        console, asked before a session starts; the decisions shipped
"""
