#!/usr/bin/env python3
"""Folds a callgrind profile of reconnect cycles (or of persisted messages) into the stages of
one reconnect (of one message).

usage: callgrind_stages.py PROFILE --cycles N [--stages connect|message] [--idle IDLE_PROFILE]
                           [--batches B] [--json OUT] [--top K] [--calls REGEX ...]

PROFILE is a callgrind dump covering N reconnects (`--stages connect`, the default) or N
persisted messages (`--stages message`); IDLE_PROFILE (optional) a dump of an idle stretch of
the same length, whose costs are subtracted first (timers, the delivery-mark flusher: what the
server does per second, not per reconnect or message). `--batches` (message table) is how many
writer transactions the N messages took, printed as the mean batch size.

A stage is the inclusive cost (the function and everything it called) of the functions named
in the table below (CONNECT_STAGES, MESSAGE_STAGES), minus the functions nested inside it that another stage counts, so that every
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
CONNECT_STAGES = [
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


# One persisted message. Each stage starts from the task (or thread) it runs in: the socket's
# read task (`new_req`), the handler task (`on_socket`'s inner closure), the socket's write task
# (`forward_to_socket`), the writer thread (its current-thread runtime's `block_on`), the
# publisher task (`publish`) and the ack task (`acknowledge`), sqlx's SQLite worker threads
# (`ExecuteIter::next`), the delivery-mark flusher. What the release build inlined: the sup
# handler (`Sup::handlers`' closure) and `WithFields::into_ack` into the handler task,
# `MessageWriter::append`, `SendTicket::wait_turn` and `shape` (mostly) into
# `send_message_full`, the writer's `run` loop into its thread's `block_on`, the `on_stored`
# hook into `Core::start`'s closure. A (caller, callee) pair counts only the calls from the one
# to the other: the ack's JSON is built inline in the handler task.
HANDLER = r"^switchboard::transport::socketio::Handlers::on_socket::\{\{closure\}\}::\{\{closure\}\}$"
SEND_FULL = r"^switchboard::core::messages::<impl switchboard::core::Core>::send_message_full::\{\{closure\}\}$"
LIMITER = r"^switchboard::core::limits::Limiters::check$"
TICKET = [r"^switchboard::core::writer::SendOrder::ticket$",
          r"^core::ptr::drop_in_place<switchboard::core::writer::SendTicket>$"]
ONESHOT_WAIT = (SEND_FULL, r"^<tokio::sync::oneshot::Receiver<T> as core::future::future::Future>::poll$")
REPLY = r"^switchboard::transport::socketio::Reply::send$"
ACK_JSON = [(HANDLER, r"^switchboard::dialects::sup::(new_message_json|nested_message_json|sender_json)$"),
            (HANDLER, r"^serde_json::value::ser::<impl serde_core::ser::Serialize for serde_json::value::Value>::serialize$"),
            (HANDLER, r"^core::ptr::drop_in_place<serde_json::value::Value>$"),
            (HANDLER, r"^alloc::collections::btree::map::BTreeMap<K,V(,A)?>(::insert| as core::iter::traits::collect::FromIterator<\(K,V\)>>::from_iter)$"),
            # From c80b13a the ack is written straight from the message (`raw_ack`) and
            # handed to socketioxide as raw JSON; `Reply::send` is inlined into the handler.
            (HANDLER, r"^switchboard::transport::socketio::raw_ack$"),
            (HANDLER, r"^socketioxide::extract::socket::AckSender<A>::send$")]
WRITER_THREAD = r"^tokio::runtime::scheduler::current_thread::CoreGuard::block_on$"
WRITE = r"^switchboard::core::writer::write::\{\{closure\}\}$"
PUBLISHER = r"^switchboard::core::writer::publish::\{\{closure\}\}$"
DELIVER = r"^switchboard::core::writer::deliver$"
ON_STORED = r"^switchboard::core::Core::start::\{\{closure\}\}$"
HUB_PUBLISH = r"^switchboard::fanout::hub::Hub::publish$"
EVENT_JSON = r"^switchboard::fanout::encode::EncodeCache::get_or_encode$"
PUSHED = r"^<switchboard::core::delivery::Ledger as switchboard::fanout::DeliveryLedger>::pushed$"
FLUSHER = r"^switchboard::core::delivery::Ledger::spawn_flusher::\{\{closure\}\}$"
MESSAGE_STAGES = [
    ("decode and validation: WebSocket read, Engine.IO / Socket.IO parse, dispatch, JSON to the "
     "request, the sup handler and `send_message_full` (validate, shape, id) without what is below",
     [r"^engineioxide::transport::ws::new_req::\{\{closure\}\}$", HANDLER],
     [REPLY, *ACK_JSON, LIMITER, *TICKET, ONESHOT_WAIT]),
    ("rate limiter (`Limiters::check`)", [LIMITER], []),
    ("ordering ticket (`SendOrder::ticket`, dropping the `SendTicket`; the wait is inlined above)", TICKET, []),
    ("queue hops: waiting for the writer's answer, the writer thread's loop and wake-ups, the "
     "publisher's and the ack task's loops (without the batch, the delivery and the acks' JSON)",
     [ONESHOT_WAIT, WRITER_THREAD, PUBLISHER, r"^switchboard::core::writer::acknowledge::\{\{closure\}\}$"],
     [WRITE, DELIVER]),
    ("database, runtime side: the batch's transaction (`write` / `store::messages::append`: "
     "statements built, bound, sent to sqlx's worker, rows decoded; the catch-up memory)", [WRITE], []),
    ("SQLite (sqlx worker threads: every statement of the batches and of the delivery marks, and "
     "their `BEGIN` / `COMMIT`, which sqlx runs through `sqlite3_exec`)",
     [r"^<sqlx_sqlite::connection::execute::ExecuteIter as core::iter::traits::iterator::Iterator>::next$",
      r"^sqlx_sqlite::connection::handle::ConnectionHandle::exec$"], []),
    ("publish / encoding, the ack: its JSON built by the sup handler, copied (`into_ack`), "
     "serialized to a Socket.IO packet (`Reply::send`)", [REPLY, *ACK_JSON], []),
    ("publish / encoding, the event: the published `Message` built from the row, the `message:new` "
     "event's JSON (once per delivery: `EncodeCache::get_or_encode`)", [EVENT_JSON, DELIVER], [HUB_PUBLISH]),
    ("hub delivery (`Hub::publish` without the event's JSON and the marks: targets, sync state, "
     "emit to the socket)", [HUB_PUBLISH], [EVENT_JSON, PUSHED]),
    ("delivery marks: noted per delivery (`pushed`), flushed (`Ledger` flusher, runtime side)",
     [PUSHED, FLUSHER], []),
    ("WebSocket write: the sockets' writer tasks (Engine.IO packets to frames, flush)",
     [r"^engineioxide::transport::ws::forward_to_socket::\{\{closure\}\}$"], []),
]

TABLES = {
    # name: (stages, what "other" is, the unit)
    "connect": (CONNECT_STAGES, "other (runtime, sockets, HTTP upgrade, allocator)", "reconnect"),
    "message": (MESSAGE_STAGES, "other (runtime scheduling, sockets, allocator)", "message"),
}


def parse(path):
    """Returns (total Ir, {function: self Ir}, {function: inclusive Ir}, {function: calls to it})."""
    names = {}
    self_cost = defaultdict(int)
    calls_out = defaultdict(int)
    calls_in = defaultdict(int)
    edges = defaultdict(int)  # (caller, callee): inclusive cost of the calls
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
                        edges[(fn, pending_call)] += ir
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
                calls_in[callee] += int(line[6:].split()[0])
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:") or line.startswith("totals:"):
                pass
            elif line.startswith("cfi=") or line.startswith("cfl=") or line.startswith("cob="):
                pass
    if events and events[0] != "Ir":
        sys.exit(f"{path}: the first event is {events[0]}, not Ir")
    inclusive = {f: self_cost[f] + calls_out[f] for f in set(self_cost) | set(calls_out)}
    inclusive[EDGES] = edges
    return total, self_cost, inclusive, calls_in


EDGES = "\0edges"  # where parse() leaves the call edges, beside the inclusive costs


def stage_costs(stages, inclusive):
    """Per stage: added minus taken-off inclusive costs; a regex that names nothing adds 0.
    A (caller, callee) pair of regexes stands for the calls from the one to the other only."""
    edges = inclusive.get(EDGES, {})

    def cost(pattern):
        if isinstance(pattern, tuple):
            caller, callee = map(re.compile, pattern)
            return sum(c for (a, b), c in edges.items() if caller.search(a) and callee.search(b))
        r = re.compile(pattern)
        return sum(c for fn, c in inclusive.items() if fn != EDGES and r.search(fn))
    return {stage: sum(map(cost, plus)) - sum(map(cost, minus)) for stage, plus, minus in stages}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--cycles", type=int, required=True, help="reconnects (or messages) the profile covers")
    ap.add_argument("--stages", choices=sorted(TABLES), default="connect")
    ap.add_argument("--idle")
    ap.add_argument("--batches", type=int, default=0, help="writer transactions of the messages (mean batch size)")
    ap.add_argument("--json")
    ap.add_argument("--top", type=int, default=0, help="also list the K costliest functions (inclusive)")
    ap.add_argument("--calls", action="append", default=[],
                    help="also count the calls to the functions this regex names (idle subtracted); repeatable")
    ap.add_argument("--commit", default="")
    args = ap.parse_args()
    table, other, unit = TABLES[args.stages]

    total, _, inclusive, calls = parse(args.profile)
    stages = stage_costs(table, inclusive)
    idle_total, idle_stages, idle_calls = 0, {s: 0 for s in stages}, {}
    if args.idle:
        idle_total, _, idle_inclusive, idle_calls = parse(args.idle)
        idle_stages = stage_costs(table, idle_inclusive)
    n = args.cycles
    per = {s: (stages[s] - idle_stages[s]) / n for s in stages}
    per_total = (total - idle_total) / n
    per[other] = per_total - sum(per.values())

    what = f"{n} {unit}s"
    if args.batches:
        what += f" in {args.batches} transactions, {n / args.batches:.1f} a batch"
    print(f"Instructions per {unit} ({what}{', idle stretch subtracted' if args.idle else ''}"
          f"{', commit ' + args.commit if args.commit else ''}):\n")
    print("| stage | instructions | share |")
    print("|---|---:|---:|")
    for stage, cost in per.items():
        print(f"| {stage} | {cost:,.0f} | {cost / per_total * 100:.1f}% |")
    print(f"| **total** | **{per_total:,.0f}** | 100% |")
    if args.idle:
        print(f"\n({'cycles' if unit == 'reconnect' else 'messages'} dump: {total:,} Ir; idle dump: {idle_total:,} Ir)")
    counted = {}
    for pattern in args.calls:
        r = re.compile(pattern)
        for fn in sorted({f for f in calls if r.search(f)} | {f for f in idle_calls if r.search(f)}):
            counted[fn] = (calls.get(fn, 0) - idle_calls.get(fn, 0)) / n
    if counted:
        print(f"\nCalls per {unit} (idle subtracted):\n")
        for fn, c in counted.items():
            print(f"{c:10,.2f}  {fn}")
    if args.top:
        print(f"\nCostliest functions per {unit} (inclusive, idle not subtracted):\n")
        costs = [(fn, c) for fn, c in inclusive.items() if fn != EDGES]
        for fn, cost in sorted(costs, key=lambda kv: -kv[1])[: args.top]:
            print(f"{cost / n:14,.0f}  {fn}")
    if args.json:
        out = {"cycles": n, "commit": args.commit, "stages": args.stages, f"per_{unit}": per,
               f"total_per_{unit}": per_total, "cycles_ir": total, "idle_ir": idle_total}
        if args.batches:
            out.update(batches=args.batches, mean_batch=n / args.batches)
        if counted:
            out["calls_per_" + unit] = counted
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
