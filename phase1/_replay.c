/* phase1._replay: QueueCore.replay's three fast moves at C speed (an optional
 * accelerator; phase1.core gives the same answers without it, slower).
 *
 * replay_rows(rows, pos, st, ctx) walks the list `rows` from index `pos` and applies, to
 * the core's own dicts, deques and _Entry objects, every row that is one of the moves a
 * busy log is made of, under exactly the conditions of the Python loop in
 * QueueCore.replay (which stays the reference and the fallback):
 *
 *   ENQUEUE  of a job with no dependencies and no delay, naming the record's job id, the
 *            job unknown (or `fresh`: the caller checked every ENQUEUE up front);
 *   DISPATCH of a pending job, attempt = its attempt + 1, with a deadline, nothing blocked;
 *   ACK      of the attempt in flight, while no job waits on a dependency.
 *
 * It stops, without judging, at the first row that is anything else (another type, a
 * gap or repeat in seq, a field of an unexpected type, a condition above that does not
 * hold) and returns that row's index (len(rows) once all are applied).  The caller sends
 * that row through QueueCore.apply, which accepts it or raises the exact error, and calls
 * again after it.  So every rule and every message stays Python's.
 *
 * `st` is a list [last_seq, next_order, d_pending, d_running, pack_at] read on entry and
 * written back on every exit (also when an exception propagates), as the Python loop's
 * locals are folded in by its `finally`: the state counts move by the deltas, and an
 * ENQUEUE's job goes through ctx's `pack` once d_pending >= pack_at.  A DISPATCH stores
 * its row as the entry's flight (the caller builds the InFlight at the end, as the Python
 * loop does).  `ctx` is the tuple (jobs, in_flight, completed, dead, waiters, blocked,
 * appends, Entry, PENDING, IN_FLIGHT, pack, fresh): `appends[p]` is the ready FIFO of
 * priority p's bound append, Entry the _Entry class (its slots are written through their
 * member descriptors' offsets, as `entry.slot = value` would).
 *
 * Nothing here does I/O, reads a clock, starts a thread or draws a random number: it
 * belongs to the pure core's layer (tests/test_layering.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>

enum { S_JOB, S_STATE, S_ATTEMPT, S_ORDER, S_FLIGHT, S_UNMET, S_COPIES, N_SLOTS };
static const char *const SLOT_NAMES[N_SLOTS] = {"job",    "state", "attempt", "order",
                                                "flight", "unmet", "copies"};

static PyObject *str_enqueue, *str_dispatch, *str_ack;
static PyTypeObject *slots_of; /* the Entry class `offsets` were read from (a strong ref) */
static Py_ssize_t offsets[N_SLOTS];

/* Read the offsets of Entry's slots (each a plain object slot: a member descriptor of
 * type T_OBJECT_EX), once per class. */
static int load_offsets(PyTypeObject *entry_t) {
    if (entry_t == slots_of) return 0;
    if (entry_t->tp_dictoffset != 0 || entry_t->tp_alloc == NULL) {
        PyErr_SetString(PyExc_TypeError, "replay_rows: Entry must be a class with __slots__ only");
        return -1;
    }
    Py_ssize_t found[N_SLOTS];
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *d = PyDict_GetItemString(entry_t->tp_dict, SLOT_NAMES[i]); /* borrowed */
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            (((PyMemberDescrObject *)d)->d_member->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "replay_rows: Entry has no plain slot %s",
                         SLOT_NAMES[i]);
            return -1;
        }
        found[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    Py_INCREF(entry_t);
    Py_XSETREF(slots_of, entry_t);
    memcpy(offsets, found, sizeof offsets);
    return 0;
}

#define SLOT(o, i) (*(PyObject **)((char *)(o) + offsets[i]))

/* entry.<slot i> = v (a new reference taken; the old value released afterwards). */
static inline void slot_set(PyObject *o, int i, PyObject *v) {
    PyObject *old = SLOT(o, i);
    Py_INCREF(v);
    SLOT(o, i) = v;
    Py_XDECREF(old);
}

/* rtype == name, for an exact str (the decoder's rows hold the interned names). */
static inline int type_is(PyObject *rtype, PyObject *name) {
    return rtype == name || PyUnicode_Compare(rtype, name) == 0;
}

/* An exact int's value in *v; 0 if o is no exact int or does not fit (no error left). */
static inline int small_int(PyObject *o, long long *v) {
    if (!PyLong_CheckExact(o)) return 0;
    int overflow;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    return !overflow && !(*v == -1 && PyErr_Occurred());
}

/* What one call works on: ctx's objects (borrowed from the caller's tuple, which it holds)
 * and the Python loop's locals. */
typedef struct {
    PyObject *jobs, *in_flight, *completed, *dead, *waiters, *blocked, *appends, *pending,
        *running, *pack;
    PyTypeObject *entry_t;
    int fresh;
    long long last, order, d_pending, d_running, pack_at;
} replay_state;

/* ACK of the attempt in flight, while no job waits on a dependency. */
static int apply_ack(replay_state *s, PyObject *job_id, PyObject *attempt, PyObject *entry) {
    if (PyDict_GET_SIZE(s->waiters) != 0 || SLOT(entry, S_STATE) != s->running ||
        SLOT(entry, S_ATTEMPT) == NULL)
        return 0;
    int same = PyObject_RichCompareBool(SLOT(entry, S_ATTEMPT), attempt, Py_EQ);
    if (same <= 0) return same;
    /* del jobs[job_id]; entry.flight = None; del in_flight[job_id]; completed[...] = None */
    if (PyDict_DelItem(s->jobs, job_id) < 0) return -1;
    slot_set(entry, S_FLIGHT, Py_None);
    if (PyDict_DelItem(s->in_flight, job_id) < 0) return -1;
    s->d_running -= 1;
    if (PyDict_SetItem(s->completed, job_id, Py_None) < 0) return -1;
    return 1;
}

/* DISPATCH of a pending job, attempt = its attempt + 1, with a deadline, nothing blocked. */
static int apply_dispatch(replay_state *s, PyObject *r, PyObject *job_id, PyObject *attempt,
                          PyObject *entry) {
    long long now_attempt, next_attempt;
    if (PyTuple_GET_ITEM(r, 6) == Py_None || PyDict_GET_SIZE(s->blocked) != 0 ||
        SLOT(entry, S_STATE) != s->pending || SLOT(entry, S_ATTEMPT) == NULL ||
        !small_int(SLOT(entry, S_ATTEMPT), &now_attempt) || !small_int(attempt, &next_attempt) ||
        now_attempt == LLONG_MAX || next_attempt != now_attempt + 1)
        return 0;
    PyObject *minus_one = PyLong_FromLong(-1); /* a cached small int */
    slot_set(entry, S_ORDER, minus_one);
    Py_DECREF(minus_one);
    s->d_pending -= 1;
    s->d_running += 1;
    slot_set(entry, S_STATE, s->running);
    slot_set(entry, S_ATTEMPT, attempt);
    slot_set(entry, S_FLIGHT, r); /* the row stands in for its InFlight */
    return PyDict_SetItem(s->in_flight, job_id, entry) < 0 ? -1 : 1;
}

/* ENQUEUE of a job with no dependencies and no delay, naming job_id, the job unknown. */
static int apply_enqueue(replay_state *s, PyObject *r, PyObject *job_id) {
    PyObject *job = PyTuple_GET_ITEM(r, 8);
    if (!PyTuple_Check(job) || PyTuple_GET_SIZE(job) < 7 || PyTuple_GET_ITEM(job, 5) != Py_None)
        return 0;
    int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(job, 0), job_id, Py_EQ);
    if (same <= 0) return same;
    int deps = PyObject_IsTrue(PyTuple_GET_ITEM(job, 6));
    if (deps != 0) return deps < 0 ? -1 : 0;
    long long priority;
    if (!small_int(PyTuple_GET_ITEM(job, 4), &priority) || priority < 0 ||
        priority >= PyTuple_GET_SIZE(s->appends))
        return 0;
    if (!s->fresh) {
        int known = PyDict_Contains(s->jobs, job_id);
        if (known == 0) known = PyDict_Contains(s->completed, job_id);
        if (known == 0 && PyDict_GET_SIZE(s->dead) != 0) known = PyDict_Contains(s->dead, job_id);
        if (known != 0) return known < 0 ? -1 : 0;
    }
    PyObject *entry = s->entry_t->tp_alloc(s->entry_t, 0);
    if (entry == NULL) return -1;
    PyObject *held = s->d_pending >= s->pack_at ? PyObject_CallOneArg(s->pack, job) : Py_NewRef(job);
    PyObject *order_obj = held == NULL ? NULL : PyLong_FromLongLong(s->order);
    if (order_obj == NULL) {
        Py_XDECREF(held);
        Py_DECREF(entry);
        return -1;
    }
    /* the new entry's slots are all NULL: nothing to release */
    SLOT(entry, S_JOB) = held;
    SLOT(entry, S_STATE) = Py_NewRef(s->pending);
    SLOT(entry, S_ATTEMPT) = Py_NewRef(PyTuple_GET_ITEM(job, 2));
    SLOT(entry, S_ORDER) = order_obj;
    SLOT(entry, S_FLIGHT) = Py_NewRef(Py_None);
    SLOT(entry, S_UNMET) = PyLong_FromLong(0); /* cached small ints */
    SLOT(entry, S_COPIES) = PyLong_FromLong(1);
    int rc = PyDict_SetItem(s->jobs, job_id, entry);
    if (rc == 0) {
        s->d_pending += 1;
        s->order += 1;
        PyObject *appended = PyObject_CallOneArg(PyTuple_GET_ITEM(s->appends, priority), entry);
        rc = appended == NULL ? -1 : 0;
        Py_XDECREF(appended);
    }
    Py_DECREF(entry);
    return rc < 0 ? -1 : 1;
}

/* Apply row r if it is one of the three moves: 1 applied, 0 not one (nothing changed), -1
 * an exception (the state as far as the Python loop would have got). */
static int apply_row(replay_state *s, PyObject *r) {
    long long seq;
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 9 || !small_int(PyTuple_GET_ITEM(r, 0), &seq) ||
        s->last == LLONG_MAX || seq != s->last + 1)
        return 0;
    PyObject *rtype = PyTuple_GET_ITEM(r, 1), *job_id = PyTuple_GET_ITEM(r, 2);
    if (!PyUnicode_CheckExact(rtype) || !PyUnicode_CheckExact(job_id)) return 0;
    int rc;
    if (type_is(rtype, str_enqueue)) {
        rc = apply_enqueue(s, r, job_id);
    } else {
        int ack = type_is(rtype, str_ack);
        if (!ack && !type_is(rtype, str_dispatch)) return 0;
        PyObject *entry = PyDict_GetItemWithError(s->jobs, job_id); /* borrowed */
        if (entry == NULL) return PyErr_Occurred() ? -1 : 0;
        if (!Py_IS_TYPE(entry, s->entry_t)) return 0;
        Py_INCREF(entry); /* held while a comparison might run code, and across the del */
        PyObject *attempt = PyTuple_GET_ITEM(r, 4);
        rc = ack ? apply_ack(s, job_id, attempt, entry)
                 : apply_dispatch(s, r, job_id, attempt, entry);
        Py_DECREF(entry);
    }
    if (rc > 0) s->last = seq;
    return rc;
}

/* Write back [last, order, d_pending, d_running] (pack_at is the caller's). */
static int write_state(PyObject *st, const replay_state *s) {
    long long vals[4] = {s->last, s->order, s->d_pending, s->d_running};
    for (Py_ssize_t k = 0; k < 4; k++) {
        PyObject *v = PyLong_FromLongLong(vals[k]);
        if (v == NULL || PyList_SetItem(st, k, v) < 0) return -1; /* SetItem steals v */
    }
    return 0;
}

static PyObject *replay_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[2]) ||
        PyList_GET_SIZE(args[2]) != 5 || !PyTuple_CheckExact(args[3]) ||
        PyTuple_GET_SIZE(args[3]) != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "replay_rows(rows: list, pos: int, st: list[5], ctx: tuple[12])");
        return NULL;
    }
    PyObject *rows = args[0], *st = args[2], *const *ctx = &PyTuple_GET_ITEM(args[3], 0);
    for (int k = 0; k < 6; k++) {
        if (!PyDict_CheckExact(ctx[k])) {
            PyErr_SetString(PyExc_TypeError, "replay_rows: ctx[0:6] must be dicts");
            return NULL;
        }
    }
    if (!PyTuple_CheckExact(ctx[6]) || !PyType_Check(ctx[7])) {
        PyErr_SetString(PyExc_TypeError, "replay_rows: ctx[6] a tuple, ctx[7] a class");
        return NULL;
    }
    replay_state s = {
        .jobs = ctx[0], .in_flight = ctx[1], .completed = ctx[2], .dead = ctx[3],
        .waiters = ctx[4], .blocked = ctx[5], .appends = ctx[6],
        .entry_t = (PyTypeObject *)ctx[7], .pending = ctx[8], .running = ctx[9], .pack = ctx[10],
    };
    if (load_offsets(s.entry_t) < 0) return NULL;
    if ((s.fresh = PyObject_IsTrue(ctx[11])) < 0) return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (!small_int(PyList_GET_ITEM(st, 0), &s.last) || !small_int(PyList_GET_ITEM(st, 1), &s.order) ||
        !small_int(PyList_GET_ITEM(st, 2), &s.d_pending) ||
        !small_int(PyList_GET_ITEM(st, 3), &s.d_running) ||
        !small_int(PyList_GET_ITEM(st, 4), &s.pack_at)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "replay_rows: st must hold five ints");
        return NULL;
    }
    int rc = 1;
    for (i = i < 0 ? 0 : i; i < PyList_GET_SIZE(rows); i++) {
        PyObject *r = PyList_GET_ITEM(rows, i);
        Py_INCREF(r); /* held while anything called here might run code */
        rc = apply_row(&s, r);
        Py_DECREF(r);
        if (rc <= 0) break;
    }
    if (rc < 0) {
        /* Keep the exception; the state still goes back (as the Python loop's finally). */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (write_state(st, &s) < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (write_state(st, &s) < 0) return NULL;
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"replay_rows", (PyCFunction)(void (*)(void))replay_rows, METH_FASTCALL,
     "replay_rows(rows, pos, st, ctx) -> int: apply rows[pos:] while each is one of\n"
     "QueueCore.replay's fast moves; the index of the first row that is not."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "phase1._replay",
    "QueueCore.replay's common moves at C speed (optional; see phase1.core).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__replay(void) {
    if (str_enqueue == NULL && (str_enqueue = PyUnicode_InternFromString("ENQUEUE")) == NULL)
        return NULL;
    if (str_dispatch == NULL && (str_dispatch = PyUnicode_InternFromString("DISPATCH")) == NULL)
        return NULL;
    if (str_ack == NULL && (str_ack = PyUnicode_InternFromString("ACK")) == NULL) return NULL;
    return PyModule_Create(&module);
}
