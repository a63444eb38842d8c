#!/usr/bin/env python3
"""Folds a callgrind profile of reconnect cycles into the stages of one reconnect.

usage: callgrind_stages.py PROFILE --cycles N [--idle IDLE_PROFILE] [--json OUT] [--top K]

PROFILE is a callgrind dump covering N reconnects; IDLE_PROFILE (optional) a dump of an idle
stretch of the same length, whose costs are subtracted first (timers, the delivery-mark
flusher: what the server does per second, not per reconnect).

A stage is the inclusive cost (the function and everything it called) of the functions named
in STAGES below, minus the functions nested inside it that another stage counts, so that every
instruction is counted once.
Inclusive costs are computed here from the profile's call records, the way callgrind_annotate
--inclusive=yes does (a function's own cost plus the cost of every call it made to another
function). The SQLite statements run on sqlx's worker threads, outside the call tree of the
code that asked for them: they form one stage of their own ("SQLite worker"), not split by
statement. "other" is the rest of the program's total: the async runtime, sockets, the HTTP
upgrade, allocations outside the named stages, the kernel boundary.
"""
import argparse
import json
import re
import sys
from collections import defaultdict

# (stage, functions whose inclusive cost it adds, functions whose inclusive cost it takes off).
# Each regex must name one function of the profile (anchored); async functions are the
# `{{closure}}` their poll runs in. Inlining decides which functions exist: `admit`, `upsert`,
# `user_connected` and `device_seen` are inlined into the functions named here, so the stages
# follow the call tree the release build has. Stages are disjoint by construction (what is
# nested is taken off); "other" is what no stage names.
SIO = r"^socketioxide::client::Client<A>::sock_connect::\{\{closure\}\}::\{\{closure\}\}$"
OPEN = r"^switchboard::core::connections::<impl switchboard::core::Core>::open_connection::\{\{closure\}\}$"
JWT = r"^switchboard::transport::socketio::jwt_identity$"
USER_SELECT = [r"^sea_orm::database::connection::ConnectionTrait::query_one::\{\{closure\}\}$",
               r"^sea_orm::entity::base_entity::EntityTrait::find_by_id$"]
CATCH_UP = r"^switchboard::fanout::hub::Hub::catch_up::\{\{closure\}\}$"
LOAD_MISSED = r"^switchboard::core::delivery::Ledger::load_missed::\{\{closure\}\}$"
CLOSED = r"^switchboard::core::presence::<impl switchboard::core::Core>::connection_closed::\{\{closure\}\}$"
GUARD_CLOSE = r"^switchboard::core::connections::ConnectionGuard::close::\{\{closure\}\}$"
DISCONNECT = r"^<F as socketioxide::handler::disconnect::DisconnectHandler<A,\(T1,T2,T3\)>>::call_with_defer::\{\{closure\}\}$"
STAGES = [
    ("auth / JWT (token from the handshake, HS256 check, claims)", [JWT], []),
    ("user upsert: the user's SELECT, runtime side", USER_SELECT, []),
    ("device, presence online, hub registration (open_connection without the SELECT)", [OPEN], USER_SELECT),
    ("catch-up query, runtime side (load_missed)", [LOAD_MISSED], []),
    ("catch-up task without its query, hub unregistration",
     [CATCH_UP, r"^switchboard::fanout::hub::Hub::unregister$"], [LOAD_MISSED]),
    ("disconnect in the core: last seen, live calls, presence offline and its circle, runtime side",
     [CLOSED, r"^switchboard::core::presence::<impl switchboard::core::Core>::presence_circle::\{\{closure\}\}$"], []),
    ("Socket.IO / Engine.IO: WebSocket session, CONNECT, greeting, DISCONNECT",
     [SIO, r"^engineioxide::transport::ws::new_req::\{\{closure\}\}$", DISCONNECT],
     [JWT, OPEN, GUARD_CLOSE]),
    ("SQLite statements (sqlx worker threads, all statements)",
     [r"^<sqlx_sqlite::connection::execute::ExecuteIter as core::iter::traits::iterator::Iterator>::next$"], []),
]


def parse(path):
    """Returns (total Ir, {function: self Ir}, {function: inclusive Ir})."""
    names = {}
    self_cost = defaultdict(int)
    calls_out = defaultdict(int)
    total = 0
    fn = None
    pending_call = None  # the callee of the next cost line
    callee = None
    events = None

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?$", spec)
        if not m:
            return spec
        ident, name = m.group(1), m.group(2)
        if name is not None:
            names[ident] = name
        return names.get(ident, ident)

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                ir = int(parts[1])
                if pending_call is not None:
                    if pending_call != fn:
                        calls_out[fn] += ir
                    pending_call = None
                else:
                    self_cost[fn] += ir
                    total += ir
                continue
            if line.startswith("fn="):
                fn = name_of(line[3:])
            elif line.startswith("cfn="):
                callee = name_of(line[4:])
            elif line.startswith("calls="):
                # The next cost line is this call's inclusive cost; the callee is the last cfn=.
                pending_call = callee
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:") or line.startswith("totals:"):
                pass
            elif line.startswith("cfi=") or line.startswith("cfl=") or line.startswith("cob="):
                pass
    if events and events[0] != "Ir":
        sys.exit(f"{path}: the first event is {events[0]}, not Ir")
    inclusive = {f: self_cost[f] + calls_out[f] for f in set(self_cost) | set(calls_out)}
    return total, self_cost, inclusive


def stage_costs(inclusive):
    """Per stage: added minus taken-off inclusive costs; a regex that names nothing adds 0."""
    def cost(pattern):
        r = re.compile(pattern)
        return sum(c for fn, c in inclusive.items() if r.search(fn))
    return {stage: sum(map(cost, plus)) - sum(map(cost, minus)) for stage, plus, minus in STAGES}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--cycles", type=int, required=True)
    ap.add_argument("--idle")
    ap.add_argument("--json")
    ap.add_argument("--top", type=int, default=0, help="also list the K costliest functions (inclusive)")
    ap.add_argument("--commit", default="")
    args = ap.parse_args()

    total, _, inclusive = parse(args.profile)
    stages = stage_costs(inclusive)
    idle_total, idle_stages = 0, {s: 0 for s in stages}
    if args.idle:
        idle_total, _, idle_inclusive = parse(args.idle)
        idle_stages = stage_costs(idle_inclusive)
    n = args.cycles
    per = {s: (stages[s] - idle_stages[s]) / n for s in stages}
    per_total = (total - idle_total) / n
    per["other (runtime, sockets, HTTP upgrade, allocator)"] = per_total - sum(per.values())

    print(f"Instructions per reconnect ({n} reconnects{', idle stretch subtracted' if args.idle else ''}"
          f"{', commit ' + args.commit if args.commit else ''}):\n")
    print("| stage | instructions | share |")
    print("|---|---:|---:|")
    for stage, cost in per.items():
        print(f"| {stage} | {cost:,.0f} | {cost / per_total * 100:.1f}% |")
    print(f"| **total** | **{per_total:,.0f}** | 100% |")
    if args.idle:
        print(f"\n(cycles dump: {total:,} Ir; idle dump: {idle_total:,} Ir)")
    if args.top:
        print(f"\nCostliest functions per reconnect (inclusive, idle not subtracted):\n")
        for fn, cost in sorted(inclusive.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"{cost / n:14,.0f}  {fn}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cycles": n, "commit": args.commit, "per_reconnect": per, "total_per_reconnect": per_total,
                       "cycles_ir": total, "idle_ir": idle_total}, f, indent=1)


if __name__ == "__main__":
    main()
