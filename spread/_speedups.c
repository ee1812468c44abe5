/* spread._speedups: the codec's and the unjellier's hot loops in C.
 *
 * Optional: spread works the same without it (the pure-Python code in _banana_codec.py and
 * _jelly_in.py is the reference, and the tests compare the two). Three functions:
 *
 *   encode(obj, symbols, size_limit, prefix_limit, max_depth) -> bytes | None
 *       Banana bytes for obj, or None whenever the Python encoder must decide: a limit is
 *       exceeded, a type is not exactly list/tuple/bytes/int/bool/float, an int is too large,
 *       the value is nested deeper than the Python stack allows, a limit is not an int.
 *       So every error message (and every unusual value) stays with the Python code.
 *
 *   scan(buf, end, stack, symbols, size_limit, prefix_limit, max_depth, max_size,
 *        list_allowance, partial, lists)
 *       -> (pos, needed, last_done, lists, error, detail1, detail2) | None
 *       One pass of Decoder._scan over buf[:end], with the same stack of (list, remaining)
 *       pairs; partial and lists are the bytes and lists of the incomplete message so far,
 *       and the lists returned are those of the message still incomplete at the end. error
 *       is 0, or a code whose message the Python side writes (see ERR_*). None, before
 *       anything is read, for settings it does not take: symbols not a tuple (no table), a
 *       limit not an int, or negative.
 *
 *       Limits of any size are taken, and clamped to what a C number holds (see limit_value):
 *       the same answers as Python's, on 32-bit builds too. Any exception other than an error
 *       code (MemoryError) leaves the stack half updated: the Decoder then refuses to go on.
 *
 *   unjelly(sexp, allowed, max_depth) -> object | NotImplemented
 *       The value of an s-expression made only of basic forms (unicode, None, boolean, list,
 *       tuple, dictionary, set, frozenset and atoms), or NotImplemented for anything else, in
 *       which case the Python unjellier starts over and decides. allowed(tag) says whether a
 *       tag means its built-in form for this call (taster, registries, invoker); it is asked
 *       once per tag. Sets, frozensets and dicts with more than MAX_KEYS_PER_HASH distinct
 *       keys of one hash are handed over too, for Python to refuse. An Exception from
 *       allowed() hands over too (Python asks again and reports it); anything else
 *       (KeyboardInterrupt, SystemExit) propagates.
 *
 * Nothing here keeps state between calls.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define T_LIST 0x80
#define T_INT 0x81
#define T_STRING 0x82
#define T_NEG 0x83
#define T_FLOAT 0x84
#define T_LONGINT 0x85
#define T_LONGNEG 0x86
#define T_VOCAB 0x87

#define INT_MAX_31 2147483647LL /* above: large int (0x85) */
#define NEG_MAX_31 2147483648LL /* magnitudes above: large negative (0x86) */

/* The C encoder and unjellier recurse (a few hundred bytes of C stack a level, within even a
 * small thread stack); past this many levels, or where the Python code would run out of
 * recursion (depth_cap), they leave the work to Python, whose own limits (and RecursionError
 * handling) then decide. Each level past UNGUARDED_LEVELS is also a Py_EnterRecursiveCall,
 * the interpreter's own guard of the C stack. */
#define C_RECURSION_CAP 1000

/* Frames kept free below the interpreter's recursion limit (see depth_cap). The Python code
 * paths need a few frames besides one per level (two for tuples and sets, as the unjellier's
 * depth counts them): 4 to 9, measured; this leaves room for more. */
#define PYTHON_FRAME_MARGIN 32

/* How many more levels C may go down from here, at most: C_RECURSION_CAP, and no more than
 * the Python code would reach before its RecursionError. Past it C hands the value to Python,
 * which then decides (and refuses) as it would have without C, whatever the recursion limit
 * and however deep the caller's stack. */
static long long
depth_cap(void)
{
    PyThreadState *tstate = PyThreadState_Get();
#if PY_VERSION_HEX >= 0x030C0000
    long long left = tstate->py_recursion_remaining;
#elif PY_VERSION_HEX >= 0x030B0000
    long long left = tstate->recursion_remaining;
#else
    long long left = (long long)Py_GetRecursionLimit() - tstate->recursion_depth;
#endif
    left -= PYTHON_FRAME_MARGIN;
    return left < C_RECURSION_CAP ? left : C_RECURSION_CAP;
}

/* Levels above this are each a Py_EnterRecursiveCall; the first ones, a few KB of C stack in
 * all, are not, so that the messages of every day (nested a few levels) pay nothing for it. */
#define UNGUARDED_LEVELS 16

/* Enter one level of recursion: 0 to go on; 1 if the recursion limit is reached (nothing
 * set: the caller hands the value to Python, which meets the same limit and reports it in
 * its own words); -1 if another exception is set. */
static int
enter_level(const char *where)
{
    if (!Py_EnterRecursiveCall(where))
        return 0;
    if (!PyErr_ExceptionMatches(PyExc_RecursionError))
        return -1;
    PyErr_Clear();
    return 1;
}

/* A limit as a C number: 0 and *value set (ints beyond a long long clamped to LLONG_MIN or
 * LLONG_MAX, which no count, depth or position a C number holds can reach), -1 if it is not
 * an int (nothing set: Python takes it), -2 with an exception set. Subclasses of int are read
 * as ints, running no user code. */
static int
clamp_limit(PyObject *limit, long long *value)
{
    if (!PyLong_Check(limit))
        return -1;
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (n == -1 && PyErr_Occurred())
        return -2;
    *value = overflow > 0 ? LLONG_MAX : overflow < 0 ? LLONG_MIN : n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding                                                                                     */

/* The bytes are written into a scratch buffer, but a large message is never one large
 * scratch buffer: glibc serves allocations past its mmap threshold (128 KiB and up) with
 * fresh pages, so a buffer grown to a megabyte faulted in every one of its pages again for
 * every message, which cost ten times the copying itself. Instead a buffer is closed once it
 * holds CHUNK_SIZE bytes and a new one begun, byte strings of BY_REFERENCE bytes or more are
 * not copied at all, and the result is assembled once, at its exact size, from the list of
 * spans: the parts of the buffers and the long strings, in order. A message that fits the
 * first buffer (nearly every message) has no spans and is copied out of it as before. */
#define CHUNK_SIZE (64 * 1024)
#define BY_REFERENCE (4 * 1024)

typedef struct {
    const char *data;
    Py_ssize_t len;
} Span;

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    Py_ssize_t mark;    /* data[:mark] is already among the spans: no realloc may move it */
    Span *spans;        /* what the result is made of, when it is not just data[:len] */
    Py_ssize_t nspans, spans_cap;
    char **closed;      /* closed buffers, which spans point into: freed at the end */
    Py_ssize_t nclosed, closed_cap;
    PyObject *symbols;  /* dict: bytes -> whole token (bytes) */
    long long size_limit; /* each clamped (clamp_limit) */
    long long prefix_limit;
    long long max_depth;
    long long depth_cap; /* see depth_cap() */
    char inline_buf[1024];
} Out;

/* Grow *array (of *cap items of size item) to hold one more than *count; -1 with MemoryError. */
static int
grow_array(void **array, Py_ssize_t *cap, Py_ssize_t count, size_t item)
{
    if (count < *cap)
        return 0;
    Py_ssize_t more = *cap ? *cap * 2 : 16;
    void *grown = PyMem_Realloc(*array, (size_t)more * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = grown;
    *cap = more;
    return 0;
}

static int
push_span(Out *out, const char *data, Py_ssize_t len)
{
    if (len == 0)
        return 0;
    if (grow_array((void **)&out->spans, &out->spans_cap, out->nspans, sizeof(Span)) < 0)
        return -1;
    out->spans[out->nspans].data = data;
    out->spans[out->nspans].len = len;
    out->nspans++;
    return 0;
}

/* List what the buffer holds past the mark as a span (it stays where it is). */
static int
span_buffer(Out *out)
{
    if (push_span(out, out->data + out->mark, out->len - out->mark) < 0)
        return -1;
    out->mark = out->len;
    return 0;
}

static int
out_reserve(Out *out, Py_ssize_t extra)
{
    Py_ssize_t need = out->len + extra;
    if (need <= out->cap)
        return 0;
    char *data;
    Py_ssize_t cap;
    if (out->mark == 0 && out->cap < CHUNK_SIZE) {
        /* Nothing points into this buffer yet: grow it. */
        cap = out->cap * 2;
        if (cap < need)
            cap = need;
        if (out->data == out->inline_buf) {
            data = PyMem_Malloc(cap);
            if (data != NULL)
                memcpy(data, out->inline_buf, out->len);
        }
        else {
            data = PyMem_Realloc(out->data, cap);
        }
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        out->data = data;
        out->cap = cap;
        return 0;
    }
    /* Close this buffer (its bytes become a span) and start a new one. */
    if (span_buffer(out) < 0)
        return -1;
    if (out->data != out->inline_buf) {
        if (grow_array((void **)&out->closed, &out->closed_cap, out->nclosed, sizeof(char *)) < 0)
            return -1;
        out->closed[out->nclosed++] = out->data;
        out->data = out->inline_buf; /* owned by the list now, whatever happens next */
    }
    cap = extra > CHUNK_SIZE ? extra : CHUNK_SIZE;
    data = PyMem_Malloc(cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = data;
    out->cap = cap;
    out->len = out->mark = 0;
    return 0;
}

/* The bytes written, as one bytes object: at its exact size, copied once. */
static PyObject *
out_result(Out *out)
{
    if (out->nspans == 0)
        return PyBytes_FromStringAndSize(out->data, out->len);
    if (span_buffer(out) < 0)
        return NULL;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < out->nspans; i++)
        total += out->spans[i].len;
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < out->nspans; i++) {
        memcpy(p, out->spans[i].data, out->spans[i].len);
        p += out->spans[i].len;
    }
    return result;
}

static void
out_free(Out *out)
{
    if (out->data != out->inline_buf)
        PyMem_Free(out->data);
    for (Py_ssize_t i = 0; i < out->nclosed; i++)
        PyMem_Free(out->closed[i]);
    PyMem_Free(out->closed);
    PyMem_Free(out->spans);
}

/* Append a header (base-128 digits, least significant first) and its type byte. */
static int
put_header(Out *out, unsigned long long magnitude, unsigned char type_byte)
{
    if (out_reserve(out, 11) < 0)
        return -1;
    char *p = out->data + out->len;
    do {
        *p++ = (char)(magnitude & 0x7F);
        magnitude >>= 7;
    } while (magnitude);
    *p++ = (char)type_byte;
    out->len = p - out->data;
    return 0;
}

static int
digits_for(unsigned long long magnitude)
{
    int n = 1;
    while (magnitude >>= 7)
        n++;
    return n;
}

/* 1: written; 0: the Python encoder must decide; -1: a Python error is set. */
static int encode_value(Out *out, PyObject *obj, Py_ssize_t depth);

static int
encode_int(Out *out, PyObject *obj)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        return 0;
    unsigned long long magnitude;
    unsigned char type_byte;
    if (value >= 0) {
        magnitude = (unsigned long long)value;
        type_byte = value <= INT_MAX_31 ? T_INT : T_LONGINT;
    }
    else {
        magnitude = (unsigned long long)(-(value + 1)) + 1;
        type_byte = magnitude <= (unsigned long long)NEG_MAX_31 ? T_NEG : T_LONGNEG;
    }
    /* Python writes 0..127 in one digit whatever the prefix limit; past the limit it decides. */
    if (!(value >= 0 && value < 128) && digits_for(magnitude) > out->prefix_limit)
        return 0;
    return put_header(out, magnitude, type_byte) < 0 ? -1 : 1;
}

static int
encode_bytes(Out *out, PyObject *obj)
{
    PyObject *token = PyDict_GetItemWithError(out->symbols, obj);
    if (token != NULL) {
        if (!PyBytes_CheckExact(token))
            return 0;
        Py_ssize_t n = PyBytes_GET_SIZE(token);
        if (out_reserve(out, n) < 0)
            return -1;
        memcpy(out->data + out->len, PyBytes_AS_STRING(token), n);
        out->len += n;
        return 1;
    }
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(obj);
    if (n > out->size_limit)
        return 0;
    if (put_header(out, (unsigned long long)n, T_STRING) < 0)
        return -1;
    if (n >= BY_REFERENCE) /* not copied here: see Out (no user code runs that could free it) */
        return span_buffer(out) < 0 || push_span(out, PyBytes_AS_STRING(obj), n) < 0 ? -1 : 1;
    if (out_reserve(out, n) < 0)
        return -1;
    memcpy(out->data + out->len, PyBytes_AS_STRING(obj), n);
    out->len += n;
    return 1;
}

static int
encode_float(Out *out, PyObject *obj)
{
    double value = PyFloat_AS_DOUBLE(obj);
    uint64_t bits;
    memcpy(&bits, &value, 8);
    if (out_reserve(out, 9) < 0)
        return -1;
    unsigned char *p = (unsigned char *)out->data + out->len;
    p[0] = T_FLOAT;
    for (int i = 8; i >= 1; i--) {
        p[i] = (unsigned char)(bits & 0xFF);
        bits >>= 8;
    }
    out->len += 9;
    return 1;
}

static int
encode_sequence(Out *out, PyObject *const *items, Py_ssize_t count, Py_ssize_t depth)
{
    if (count > out->size_limit || depth > out->max_depth || depth > out->depth_cap)
        return 0;
    int guarded = depth > UNGUARDED_LEVELS;
    if (guarded) {
        int entered = enter_level(" while encoding banana");
        if (entered != 0)
            return entered < 0 ? -1 : 0;
    }
    int done = put_header(out, (unsigned long long)count, T_LIST) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; done > 0 && i < count; i++)
        done = encode_value(out, items[i], depth);
    if (guarded)
        Py_LeaveRecursiveCall();
    return done;
}

static int
encode_value(Out *out, PyObject *obj, Py_ssize_t depth)
{
    PyTypeObject *kind = Py_TYPE(obj);
    if (kind == &PyBytes_Type)
        return encode_bytes(out, obj);
    if (kind == &PyList_Type) {
        /* A list may change under us only through user code, and none runs here. */
        return encode_sequence(out, ((PyListObject *)obj)->ob_item, PyList_GET_SIZE(obj),
                               depth + 1);
    }
    if (kind == &PyTuple_Type)
        return encode_sequence(out, ((PyTupleObject *)obj)->ob_item, PyTuple_GET_SIZE(obj),
                               depth + 1);
    if (kind == &PyLong_Type || kind == &PyBool_Type)
        return encode_int(out, obj);
    if (kind == &PyFloat_Type)
        return encode_float(out, obj);
    return 0;
}

static PyObject *
speedups_encode(PyObject *module, PyObject *args)
{
    PyObject *obj, *symbols, *size_limit, *prefix_limit, *max_depth;
    Out out;
    if (!PyArg_ParseTuple(args, "OO!OOO", &obj, &PyDict_Type, &symbols, &size_limit,
                          &prefix_limit, &max_depth))
        return NULL;
    int taken = clamp_limit(size_limit, &out.size_limit);
    if (taken == 0)
        taken = clamp_limit(prefix_limit, &out.prefix_limit);
    if (taken == 0)
        taken = clamp_limit(max_depth, &out.max_depth);
    if (taken < 0) /* limits that are not ints: the Python encoder decides */
        return taken == -1 ? Py_NewRef(Py_None) : NULL;
    out.depth_cap = depth_cap();
    out.data = out.inline_buf;
    out.len = out.mark = 0;
    out.cap = sizeof(out.inline_buf);
    out.spans = NULL;
    out.nspans = out.spans_cap = 0;
    out.closed = NULL;
    out.nclosed = out.closed_cap = 0;
    out.symbols = symbols;
    int done = encode_value(&out, obj, 0);
    PyObject *result = NULL;
    if (done > 0)
        result = out_result(&out);
    else if (done == 0)
        result = Py_NewRef(Py_None);
    out_free(&out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding                                                                                     */

/* Error codes for scan(); the Python Decoder turns each into its message. */
#define ERR_NONE 0
#define ERR_PREFIX 1   /* header longer than prefix_limit digits */
#define ERR_TOO_LONG 2 /* detail1: type byte, detail2: announced length */
#define ERR_DEPTH 3    /* lists nested deeper than max_depth */
#define ERR_SYMBOL 4   /* detail1: unknown vocabulary number */
#define ERR_TYPE 5     /* detail1: unknown type byte */
#define ERR_TOO_BIG 6  /* a message over max_size bytes */
#define ERR_LISTS 7    /* detail1: the message's bytes so far, which hold too many lists */

/* As _banana_codec.BYTES_PER_LIST, whose docstring explains it: a message may open one list
 * per this many bytes so far, plus list_allowance lists. */
#define BYTES_PER_LIST 4

typedef struct {
    PyObject *items;  /* owned */
    long long remaining; /* a long long even on 32-bit builds: an announced count */
} Level;

/* Short strings repeat (jelly's tags, dict keys): within one scan, equal ones share an object. */
#define STRING_CACHE_SLOTS 256
#define STRING_CACHE_MAX_LENGTH 24

typedef struct {
    PyObject *slots[STRING_CACHE_SLOTS];
} StringCache;

static PyObject *
cached_bytes(StringCache *cache, const unsigned char *data, Py_ssize_t n)
{
    if (n > STRING_CACHE_MAX_LENGTH || n < 2)
        return PyBytes_FromStringAndSize((const char *)data, n);
    unsigned int h = (unsigned int)n * 31u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = h * 33u + data[i];
    PyObject **slot = &cache->slots[h % STRING_CACHE_SLOTS];
    PyObject *found = *slot;
    if (found != NULL && PyBytes_GET_SIZE(found) == n &&
        memcmp(PyBytes_AS_STRING(found), data, n) == 0)
        return Py_NewRef(found);
    PyObject *made = PyBytes_FromStringAndSize((const char *)data, n);
    if (made != NULL) {
        Py_XSETREF(*slot, Py_NewRef(made));
    }
    return made;
}

/* A header's value when it does not fit in 63 bits: a Python int, made in time linear in the
 * digits (their 7 bits each packed into bytes for int.from_bytes), however many there are. */
static PyObject *
big_value(const unsigned char *digits, Py_ssize_t n)
{
    while (n > 0 && digits[n - 1] == 0)
        n--; /* high-order zero digits add nothing */
    Py_ssize_t size = n - n / 8; /* ceil(7n / 8) bytes */
    unsigned char *packed = PyMem_Calloc(size ? size : 1, 1);
    if (packed == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t bit = (size_t)i * 7;
        unsigned int shifted = (unsigned int)digits[i] << (bit % 8);
        packed[bit / 8] |= (unsigned char)shifted;
        if (shifted > 0xFF)
            packed[bit / 8 + 1] |= (unsigned char)(shifted >> 8);
    }
    PyObject *value = PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "y#s",
                                          (const char *)packed, size, "little");
    PyMem_Free(packed);
    return value;
}

/* Whether a header's value beyond 63 bits is more than limit (an int beyond 63 bits too):
 * 1 or 0, or -1 with an exception set. */
static int
big_value_exceeds(const unsigned char *digits, Py_ssize_t n, PyObject *limit)
{
    PyObject *value = big_value(digits, n);
    if (value == NULL)
        return -1;
    int more = PyObject_RichCompareBool(value, limit, Py_GT);
    Py_DECREF(value);
    return more;
}

/* Append to a list made by new_list (steals value). */
static int
list_push(PyObject *list, PyObject *value)
{
    if (value == NULL)
        return -1;
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t size = Py_SIZE(l);
    if (size < l->allocated) {
        l->ob_item[size] = value;
        Py_SET_SIZE(l, size + 1);
        return 0;
    }
    int failed = PyList_Append(list, value);
    Py_DECREF(value);
    return failed;
}

/* An empty list with room for up to 16 of the count announced: announcing costs a peer
 * nothing, so memory grows only with elements that really arrive. */
static PyObject *
new_list(unsigned long long count)
{
    Py_ssize_t room = count < 16 ? (Py_ssize_t)count : 16;
    PyObject *list = PyList_New(room);
    if (list != NULL)
        Py_SET_SIZE((PyVarObject *)list, 0);
    return list;
}

typedef struct {
    /* the Python stack, as passed: levels opened by earlier calls */
    PyObject *stack;
    /* levels opened by this call, innermost last */
    Level *levels;
    Py_ssize_t depth;
    Py_ssize_t capacity;
} Stack;

static Py_ssize_t
stack_size(Stack *s)
{
    return PyList_GET_SIZE(s->stack) + s->depth;
}

static int
stack_push(Stack *s, PyObject *items, long long remaining)
{
    if (s->depth == s->capacity) {
        Py_ssize_t capacity = s->capacity ? s->capacity * 2 : 32;
        Level *levels = PyMem_Realloc(s->levels, capacity * sizeof(Level));
        if (levels == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->levels = levels;
        s->capacity = capacity;
    }
    s->levels[s->depth].items = items;
    s->levels[s->depth].remaining = remaining;
    s->depth++;
    return 0;
}

/* Pop the innermost level into *items (a new reference) and *remaining. */
static int
stack_pop(Stack *s, PyObject **items, long long *remaining)
{
    if (s->depth) {
        s->depth--;
        *items = s->levels[s->depth].items;
        *remaining = s->levels[s->depth].remaining;
        return 0;
    }
    Py_ssize_t last = PyList_GET_SIZE(s->stack) - 1;
    PyObject *pair = PyList_GET_ITEM(s->stack, last);
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_SystemError, "decoder stack holds something other than pairs");
        return -1;
    }
    /* Python may have stored any count: one beyond a long long can never be reached. */
    int overflow = 0;
    *remaining = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(pair, 1), &overflow);
    if (*remaining == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        *remaining = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    *items = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    return PyList_SetSlice(s->stack, last, last + 1, NULL);
}

/* Give the levels this call opened back to the Python stack, as (list, remaining) pairs. */
static int
stack_flush(Stack *s)
{
    int failed = 0;
    for (Py_ssize_t i = 0; i < s->depth; i++) {
        Level *level = &s->levels[i];
        if (!failed) {
            PyObject *pair = Py_BuildValue("(OL)", level->items, level->remaining);
            if (pair == NULL || PyList_Append(s->stack, pair) < 0)
                failed = 1;
            Py_XDECREF(pair);
        }
        Py_DECREF(level->items);
    }
    s->depth = 0;
    PyMem_Free(s->levels);
    s->levels = NULL;
    return failed ? -1 : 0;
}

/* A limit for scan(): 0 and *value set (clamped, as clamp_limit), -1 if the Python scanner
 * must take it (not exactly an int, or negative), -2 with an exception set. Clamping changes
 * no answer: a count, depth or size a C number holds cannot pass LLONG_MAX, and the one
 * value that can, a header beyond 63 bits, is compared with the size limit itself
 * (big_value_exceeds). */
static int
limit_value(PyObject *limit, long long *value)
{
    if (!PyLong_CheckExact(limit))
        return -1;
    int taken = clamp_limit(limit, value);
    return taken < 0 ? taken : *value < 0 ? -1 : 0;
}

static PyObject *
speedups_scan(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t end, partial, lists;
    long long size_limit, prefix_limit, max_depth, max_size, list_allowance;
    PyObject *stack_list, *symbols, *limits[5];
    if (!PyArg_ParseTuple(args, "y*nO!OOOOOOnn", &view, &end, &PyList_Type, &stack_list,
                          &symbols, &limits[0], &limits[1], &limits[2], &limits[3], &limits[4],
                          &partial, &lists))
        return NULL;
    long long *values[5] = {&size_limit, &prefix_limit, &max_depth, &max_size, &list_allowance};
    int taken = PyTuple_Check(symbols) ? 0 : -1;
    for (int i = 0; taken == 0 && i < 5; i++)
        taken = limit_value(limits[i], values[i]);
    if (taken < 0) {
        PyBuffer_Release(&view);
        /* -1: settings for the Python scanner */
        return taken == -1 ? Py_NewRef(Py_None) : NULL;
    }
    if (end < 0 || end > view.len || PyList_GET_SIZE(stack_list) < 1 || partial < 0 ||
        lists < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: bad arguments");
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t symbol_count = PyTuple_GET_SIZE(symbols);
    Stack stack = {stack_list, NULL, 0, 0};
    StringCache cache;
    memset(&cache, 0, sizeof(cache));

    Py_ssize_t pos = 0, needed = 0, last_done = -1;
    Py_ssize_t message_start = -partial; /* where the current message began, relative to buf */
    int error = ERR_NONE;
    PyObject *detail1 = NULL, *detail2 = NULL;
    PyObject *items = NULL, *out = NULL;
    long long remaining;
    int failed = 0; /* a Python exception is set */

    /* The top level, slot 0, holds the list feed() returns (compared by identity only). */
    PyObject *top = PyList_GET_ITEM(stack_list, 0);
    if (!PyTuple_Check(top) || PyTuple_GET_SIZE(top) != 2) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: the stack's first entry is not a pair");
        return NULL;
    }
    out = PyTuple_GET_ITEM(top, 0);
    if (stack_pop(&stack, &items, &remaining) < 0) {
        failed = 1;
        goto done;
    }

    while (pos < end) {
        /* The header: base-128 digits, least significant first, then a type byte. As in
         * Python (and Twisted), the prefix limit counts digits, high-order zeros included,
         * and says nothing of the value: 5 followed by nine zero digits is still 5. The
         * first nine digits (63 bits) go into count; big is set only if a later digit is
         * not zero, that is, only if the value itself needs more than 63 bits. */
        Py_ssize_t p = pos;
        unsigned long long count = 0;
        int shift = 0;
        int big = 0;
        while (p < end && buf[p] < 0x80) {
            if (p - pos == prefix_limit) {
                error = ERR_PREFIX;
                goto done;
            }
            if (shift < 63) {
                count |= (unsigned long long)buf[p] << shift;
                shift += 7;
            }
            else if (buf[p]) {
                big = 1;
            }
            p++;
        }
        if (p == end) {
            needed = end + 1;
            break;
        }
        Py_ssize_t digits = p - pos;
        unsigned char kind = buf[p];
        Py_ssize_t start = p + 1;
        if (kind == T_STRING || kind == T_LIST) {
            int too_long = big ? size_limit < LLONG_MAX : count > (unsigned long long)size_limit;
            if (big && !too_long) {
                /* A size limit beyond 63 bits: compare the value itself, as Python does. */
                too_long = big_value_exceeds(buf + pos, digits, limits[0]);
                if (too_long < 0) {
                    failed = 1;
                    goto done;
                }
                count = LLONG_MAX; /* a count no wire can complete, as the value itself */
            }
            if (too_long) {
                error = ERR_TOO_LONG;
                detail1 = PyLong_FromLong(kind);
                detail2 = big ? big_value(buf + pos, digits) : PyLong_FromUnsignedLongLong(count);
                if (detail1 == NULL || detail2 == NULL)
                    failed = 1;
                goto done;
            }
        }
        PyObject *value;
        switch (kind) {
        case T_STRING: {
            if (count > (unsigned long long)(end - start)) {
                /* start + count, unless that is past any buffer there can be */
                needed = count > (unsigned long long)(PY_SSIZE_T_MAX - start)
                             ? PY_SSIZE_T_MAX
                             : start + (Py_ssize_t)count;
                goto incomplete;
            }
            Py_ssize_t stop = start + (Py_ssize_t)count;
            value = cached_bytes(&cache, buf + start, (Py_ssize_t)count);
            if (list_push(items, value) < 0) {
                failed = 1;
                goto done;
            }
            pos = stop;
            break;
        }
        case T_LIST:
            if (stack_size(&stack) >= max_depth) {
                error = ERR_DEPTH;
                goto done;
            }
            lists++;
            /* lists > bytes / BYTES_PER_LIST + list_allowance, without overflow */
            if (lists - (start - message_start) / BYTES_PER_LIST > list_allowance) {
                error = ERR_LISTS;
                detail1 = PyLong_FromSsize_t(start - message_start);
                if (detail1 == NULL)
                    failed = 1;
                goto done;
            }
            pos = start;
            if (count) {
                PyObject *inner = new_list(count);
                if (inner == NULL || stack_push(&stack, items, remaining) < 0) {
                    Py_XDECREF(inner);
                    failed = 1;
                    goto done;
                }
                items = inner;
                remaining = (long long)count;
                continue;
            }
            if (list_push(items, PyList_New(0)) < 0) {
                failed = 1;
                goto done;
            }
            break;
        case T_VOCAB: {
            PyObject *word = NULL;
            if (!big && count < (unsigned long long)symbol_count)
                word = PyTuple_GET_ITEM(symbols, (Py_ssize_t)count);
            if (word == NULL || word == Py_None) {
                error = ERR_SYMBOL;
                detail1 = big ? big_value(buf + pos, digits) : PyLong_FromUnsignedLongLong(count);
                if (detail1 == NULL)
                    failed = 1;
                goto done;
            }
            if (list_push(items, Py_NewRef(word)) < 0) {
                failed = 1;
                goto done;
            }
            pos = start;
            break;
        }
        case T_INT:
        case T_LONGINT:
        case T_NEG:
        case T_LONGNEG:
            if (big)
                value = big_value(buf + pos, digits);
            else
                value = PyLong_FromUnsignedLongLong(count);
            if (value != NULL && (kind == T_NEG || kind == T_LONGNEG)) {
                Py_SETREF(value, PyNumber_Negative(value));
            }
            if (list_push(items, value) < 0) {
                failed = 1;
                goto done;
            }
            pos = start;
            break;
        case T_FLOAT: {
            Py_ssize_t stop = start + 8;
            if (stop > end) {
                needed = stop;
                goto incomplete;
            }
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits = (bits << 8) | buf[start + i];
            double number;
            memcpy(&number, &bits, 8);
            if (list_push(items, PyFloat_FromDouble(number)) < 0) {
                failed = 1;
                goto done;
            }
            pos = stop;
            break;
        }
        default:
            error = ERR_TYPE;
            detail1 = PyLong_FromLong(kind);
            if (detail1 == NULL)
                failed = 1;
            goto done;
        }
        remaining--;
        if (!remaining) {
            /* The innermost list is complete: close it and every parent it completes. */
            while (!remaining && stack_size(&stack)) {
                PyObject *finished = items;
                if (stack_pop(&stack, &items, &remaining) < 0) {
                    items = finished;
                    failed = 1;
                    goto done;
                }
                if (list_push(items, finished) < 0) {
                    failed = 1;
                    goto done;
                }
                remaining--;
            }
            if (items == out) { /* a whole message: was it within bounds? */
                if (pos - message_start > max_size) {
                    error = ERR_TOO_BIG;
                    goto done;
                }
                last_done = message_start = pos;
                lists = 0;
            }
            if (!remaining)
                break;
        }
    }
incomplete:
done:
    if (items != NULL) {
        if (stack_push(&stack, items, remaining) < 0)
            failed = 1;
        items = NULL;
    }
    if (stack_flush(&stack) < 0)
        failed = 1;
    for (int i = 0; i < STRING_CACHE_SLOTS; i++)
        Py_XDECREF(cache.slots[i]);
    PyBuffer_Release(&view);
    if (failed) {
        Py_XDECREF(detail1);
        Py_XDECREF(detail2);
        return NULL;
    }
    return Py_BuildValue("(nnnniNN)", pos, needed, last_done, lists, error,
                         detail1 ? detail1 : Py_NewRef(Py_None),
                         detail2 ? detail2 : Py_NewRef(Py_None));
}

/* ------------------------------------------------------------------------------------------ */
/* unjelly of the basic forms                                                                   */

/* As _jelly_forms.MAX_KEYS_PER_HASH, whose docstring explains it: a set, frozenset or dict
 * with more distinct keys of one hash than this is a hash-collision attack, which Python
 * refuses. Only keys whose hash a peer can choose are counted. */
#define MAX_KEYS_PER_HASH 64

#if defined(PyHASH_MODULUS)
#define HASH_MODULUS ((long long)PyHASH_MODULUS)
#else
#define HASH_MODULUS ((long long)_PyHASH_MODULUS)
#endif

enum { TAG_UNICODE, TAG_NONE, TAG_BOOLEAN, TAG_LIST, TAG_TUPLE, TAG_DICTIONARY, TAG_SET,
       TAG_FROZENSET, TAG_COUNT, TAG_OTHER = -1 };

/* Texts repeat too (dict keys, tags): the banana decoder shares the bytes of equal short
 * strings, so within one call the str made from one bytes object is made once. */
#define TEXT_CACHE_SLOTS 128
#define TEXT_CACHE_MAX_LENGTH 24

typedef struct {
    PyObject *data; /* owned, compared by identity */
    PyObject *text; /* owned */
} TextSlot;

typedef struct {
    PyObject *allowed;  /* allowed(tag) -> bool */
    TextSlot texts[TEXT_CACHE_SLOTS];
    long long max_depth; /* clamped (clamp_limit) */
    long long depth_cap; /* see depth_cap() */
    Py_ssize_t depth;
    signed char verdict[TAG_COUNT]; /* -1 not asked yet, 0 refused, 1 built-in form */
} Unjellier;

static int
tag_of(PyObject *tag)
{
    if (!PyBytes_CheckExact(tag))
        return TAG_OTHER;
    const char *s = PyBytes_AS_STRING(tag);
    switch (PyBytes_GET_SIZE(tag)) {
    case 3:
        return memcmp(s, "set", 3) == 0 ? TAG_SET : TAG_OTHER;
    case 4:
        if (memcmp(s, "list", 4) == 0)
            return TAG_LIST;
        return memcmp(s, "None", 4) == 0 ? TAG_NONE : TAG_OTHER;
    case 5:
        return memcmp(s, "tuple", 5) == 0 ? TAG_TUPLE : TAG_OTHER;
    case 7:
        if (memcmp(s, "unicode", 7) == 0)
            return TAG_UNICODE;
        return memcmp(s, "boolean", 7) == 0 ? TAG_BOOLEAN : TAG_OTHER;
    case 9:
        return memcmp(s, "frozenset", 9) == 0 ? TAG_FROZENSET : TAG_OTHER;
    case 10:
        return memcmp(s, "dictionary", 10) == 0 ? TAG_DICTIONARY : TAG_OTHER;
    default:
        return TAG_OTHER;
    }
}

/* Whether tag means its built-in form in this call: 1 yes, 0 no (or an Exception said
 * neither), -1 with a BaseException that is not an Exception set (KeyboardInterrupt...). */
static int
tag_allowed(Unjellier *u, int tag, PyObject *tag_object)
{
    if (u->verdict[tag] < 0) {
        PyObject *answer = PyObject_CallOneArg(u->allowed, tag_object);
        int truth = answer == NULL ? -1 : PyObject_IsTrue(answer);
        Py_XDECREF(answer);
        if (truth < 0) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return -1; /* an interrupt or an exit: never swallowed */
            PyErr_Clear(); /* the Python unjellier will meet the same error and report it */
            truth = 0;
        }
        u->verdict[tag] = (signed char)truth;
    }
    return u->verdict[tag];
}

#define NOT_BASIC Py_NotImplemented

/* A new reference to the value, NOT_BASIC (borrowed) to hand over to Python, or NULL. */
static PyObject *unjelly_any(Unjellier *u, PyObject *sexp);

static PyObject *
unjelly_text(Unjellier *u, PyObject *sexp)
{
    if (PyList_GET_SIZE(sexp) != 2)
        return NOT_BASIC;
    PyObject *data = PyList_GET_ITEM(sexp, 1);
    if (!PyBytes_CheckExact(data))
        return NOT_BASIC;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    TextSlot *slot = NULL;
    if (n <= TEXT_CACHE_MAX_LENGTH) {
        slot = &u->texts[((uintptr_t)data >> 4) % TEXT_CACHE_SLOTS];
        if (slot->data == data)
            return Py_NewRef(slot->text);
    }
    PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data), n, NULL);
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear(); /* Python explains */
        return NOT_BASIC;
    }
    if (slot != NULL) {
        Py_XSETREF(slot->data, Py_NewRef(data));
        Py_XSETREF(slot->text, Py_NewRef(text));
    }
    return text;
}

/* The items sexp[1:] unjellied into a new list, NOT_BASIC, or NULL. */
static PyObject *
unjelly_items(Unjellier *u, PyObject *sexp)
{
    Py_ssize_t n = PyList_GET_SIZE(sexp) - 1;
    PyObject *result = PyList_New(n);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = unjelly_any(u, PyList_GET_ITEM(sexp, i + 1));
        if (item == NULL || item == NOT_BASIC) {
            Py_DECREF(result);
            return item;
        }
        PyList_SET_ITEM(result, i, item);
    }
    return result;
}

/* Whether no peer can choose key's hash, so it is not counted (as KeyTable decides): str and
 * bytes hash with a per-process secret, and ints of magnitude below the modulus are their
 * own hash. */
static int
hash_unchosen(PyObject *key)
{
    if (PyUnicode_CheckExact(key) || PyBytes_CheckExact(key))
        return 1;
    if (!PyLong_CheckExact(key))
        return 0;
    /* One digit (15 or 30 bits) is below any modulus: the common case, without a call. */
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)key))
        return 1;
#else
    if (Py_SIZE(key) >= -1 && Py_SIZE(key) <= 1)
        return 1;
#endif
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(key, &overflow);
    return !overflow && value > -HASH_MODULUS && value < HASH_MODULUS;
}

/* table[key] = value for a dict; table.add(key) for a set or brand new frozenset (value NULL). */
static int
table_put(PyObject *table, PyObject *key, PyObject *value)
{
    return value != NULL ? PyDict_SetItem(table, key, value) : PySet_Add(table, key);
}

static Py_ssize_t
table_size(PyObject *table, PyObject *value)
{
    return value != NULL ? PyDict_GET_SIZE(table) : PySet_GET_SIZE(table);
}

/* How many distinct chosen keys a container holds in each bucket of their hashes: at least as
 * many as KeyTable counts for any one hash in that bucket, so C hands over to Python whenever
 * Python would refuse (and, where unrelated hashes share a bucket, almost never otherwise:
 * there are twice as many buckets as keys). A peer who aims its keys at one bucket gains
 * nothing: Python takes over, as it does for any message with a reference in it. */
typedef struct {
    unsigned char *buckets; /* made when first needed; each at most MAX_KEYS_PER_HASH */
    Py_ssize_t keys;        /* how many keys the container is given */
    size_t mask;
} KeyCounts;

static unsigned char *
bucket_of(KeyCounts *counts, Py_hash_t hash)
{
    if (counts->buckets == NULL) {
        size_t size = 64;
        while (size < 2 * (size_t)counts->keys)
            size *= 2;
        counts->buckets = PyMem_Calloc(size, 1);
        if (counts->buckets == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        counts->mask = size - 1;
    }
    uint64_t mixed = (uint64_t)hash; /* MurmurHash3's finalizer: every bit moves the bucket */
    mixed ^= mixed >> 33;
    mixed *= 0xff51afd7ed558ccdULL;
    mixed ^= mixed >> 33;
    mixed *= 0xc4ceb9fe1a85ec53ULL;
    mixed ^= mixed >> 33;
    return &counts->buckets[mixed & counts->mask];
}

/* table_put, refusing keys as KeyTable does: unless counts is NULL (a table of at most
 * MAX_KEYS_PER_HASH keys), the distinct keys of chosen hashes are counted per bucket.
 * 0: done; 1: hand over to Python (an unhashable key, or a bucket full of keys: Python
 * refuses them, or decides they are fine); -1: a Python error is set. */
static int
insert_key(PyObject *table, KeyCounts *counts, PyObject *key, PyObject *value)
{
    Py_hash_t hash = -1;
    if (counts == NULL || hash_unchosen(key)) {
        if (table_put(table, key, value) == 0)
            return 0;
    }
    else {
        hash = PyObject_Hash(key);
    }
    if (hash == -1) { /* the insert or the hash failed */
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return -1;
        PyErr_Clear(); /* an unhashable key */
        return 1;
    }
    unsigned char *bucket = bucket_of(counts, hash);
    if (bucket == NULL)
        return -1;
    if (*bucket >= MAX_KEYS_PER_HASH) {
        int present = value != NULL ? PyDict_Contains(table, key) : PySet_Contains(table, key);
        if (present <= 0)
            return present < 0 ? -1 : 1;
    }
    Py_ssize_t before = table_size(table, value);
    if (table_put(table, key, value) < 0)
        return -1;
    if (table_size(table, value) > before)
        (*bucket)++;
    return 0;
}

static PyObject *
unjelly_dictionary(Unjellier *u, PyObject *sexp)
{
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(sexp);
    KeyCounts counts = {NULL, n - 1, 0};
    KeyCounts *counting = n - 1 > MAX_KEYS_PER_HASH ? &counts : NULL;
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(sexp, i);
        if (!PyList_CheckExact(pair) || PyList_GET_SIZE(pair) != 2)
            goto not_basic;
        PyObject *key = unjelly_any(u, PyList_GET_ITEM(pair, 0));
        if (key == NULL || key == NOT_BASIC) {
            Py_DECREF(result);
            PyMem_Free(counts.buckets);
            return key;
        }
        PyObject *value = unjelly_any(u, PyList_GET_ITEM(pair, 1));
        if (value == NULL || value == NOT_BASIC) {
            Py_DECREF(key);
            Py_DECREF(result);
            PyMem_Free(counts.buckets);
            return value;
        }
        int done = insert_key(result, counting, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (done != 0) {
            Py_DECREF(result);
            PyMem_Free(counts.buckets);
            return done < 0 ? NULL : NOT_BASIC;
        }
    }
    PyMem_Free(counts.buckets);
    return result;
not_basic:
    Py_DECREF(result);
    PyMem_Free(counts.buckets);
    return NOT_BASIC;
}

static PyObject *
unjelly_members(Unjellier *u, PyObject *sexp, int frozen)
{
    PyObject *items = unjelly_items(u, sexp);
    if (items == NULL || items == NOT_BASIC)
        return items;
    Py_ssize_t n = PyList_GET_SIZE(items);
    KeyCounts counts = {NULL, n, 0};
    PyObject *result;
    int done;
    Py_ssize_t unchosen = 0; /* str, bytes and small ints are never counted */
    if (n > MAX_KEYS_PER_HASH)
        while (unchosen < n && hash_unchosen(PyList_GET_ITEM(items, unchosen)))
            unchosen++;
    if (n <= MAX_KEYS_PER_HASH || unchosen == n) { /* nothing to count */
        result = frozen ? PyFrozenSet_New(items) : PySet_New(items);
        done = result != NULL ? 0 : PyErr_ExceptionMatches(PyExc_TypeError) ? 1 : -1;
        if (done > 0)
            PyErr_Clear(); /* an unhashable member */
    }
    else {
        /* A brand new frozenset, filled by PySet_Add before anyone else sees it. */
        result = frozen ? PyFrozenSet_New(NULL) : PySet_New(NULL);
        done = result == NULL ? -1 : 0;
        for (Py_ssize_t i = 0; done == 0 && i < n; i++)
            done = insert_key(result, &counts, PyList_GET_ITEM(items, i), NULL);
    }
    Py_DECREF(items);
    PyMem_Free(counts.buckets);
    if (done != 0) {
        Py_XDECREF(result);
        return done < 0 ? NULL : NOT_BASIC;
    }
    return result;
}

static PyObject *
unjelly_form(Unjellier *u, PyObject *sexp)
{
    Py_ssize_t n = PyList_GET_SIZE(sexp);
    if (n == 0)
        return NOT_BASIC;
    PyObject *head = PyList_GET_ITEM(sexp, 0);
    int tag = tag_of(head);
    int allowed = tag == TAG_OTHER ? 0 : tag_allowed(u, tag, head);
    if (allowed <= 0)
        return allowed < 0 ? NULL : NOT_BASIC;
    switch (tag) {
    case TAG_UNICODE:
        return unjelly_text(u, sexp);
    case TAG_NONE:
        return n == 1 ? Py_NewRef(Py_None) : NOT_BASIC;
    case TAG_BOOLEAN: {
        if (n != 2 || !PyBytes_CheckExact(PyList_GET_ITEM(sexp, 1)))
            return NOT_BASIC;
        PyObject *word = PyList_GET_ITEM(sexp, 1);
        const char *s = PyBytes_AS_STRING(word);
        Py_ssize_t len = PyBytes_GET_SIZE(word);
        if (len == 4 && memcmp(s, "true", 4) == 0)
            return Py_NewRef(Py_True);
        if (len == 5 && memcmp(s, "false", 5) == 0)
            return Py_NewRef(Py_False);
        return NOT_BASIC;
    }
    default:
        break;
    }
    /* The containers: their nesting counts as the Python unjellier counts it. */
    Py_ssize_t cost = (tag == TAG_LIST || tag == TAG_DICTIONARY) ? 1 : 2;
    if (u->depth + cost > u->max_depth || u->depth + cost > u->depth_cap)
        return NOT_BASIC;
    int guarded = u->depth > UNGUARDED_LEVELS;
    if (guarded) {
        int entered = enter_level(" while unjellying");
        if (entered != 0)
            return entered < 0 ? NULL : NOT_BASIC;
    }
    u->depth += cost;
    PyObject *result;
    switch (tag) {
    case TAG_LIST:
        result = unjelly_items(u, sexp);
        break;
    case TAG_TUPLE: {
        result = unjelly_items(u, sexp);
        if (result != NULL && result != NOT_BASIC)
            Py_SETREF(result, PyList_AsTuple(result));
        break;
    }
    case TAG_DICTIONARY:
        result = unjelly_dictionary(u, sexp);
        break;
    case TAG_SET:
        result = unjelly_members(u, sexp, 0);
        break;
    default:
        result = unjelly_members(u, sexp, 1);
        break;
    }
    u->depth -= cost;
    if (guarded)
        Py_LeaveRecursiveCall();
    return result;
}

static PyObject *
unjelly_any(Unjellier *u, PyObject *sexp)
{
    PyTypeObject *kind = Py_TYPE(sexp);
    if (kind == &PyList_Type) {
        /* [unicode, bytes], the commonest form of all, without a call */
        if (PyList_GET_SIZE(sexp) == 2 && u->verdict[TAG_UNICODE] == 1) {
            PyObject *head = PyList_GET_ITEM(sexp, 0);
            if (PyBytes_CheckExact(head) && PyBytes_GET_SIZE(head) == 7 &&
                memcmp(PyBytes_AS_STRING(head), "unicode", 7) == 0)
                return unjelly_text(u, sexp);
        }
        return unjelly_form(u, sexp);
    }
    if (kind == &PyBytes_Type || kind == &PyLong_Type || kind == &PyFloat_Type ||
        kind == &PyUnicode_Type)
        return Py_NewRef(sexp);
    return NOT_BASIC;
}

static PyObject *
speedups_unjelly(PyObject *module, PyObject *args)
{
    PyObject *sexp, *max_depth;
    Unjellier u;
    if (!PyArg_ParseTuple(args, "OOO", &sexp, &u.allowed, &max_depth))
        return NULL;
    int taken = clamp_limit(max_depth, &u.max_depth);
    if (taken < 0) /* -1: a depth that is not an int, for Python to judge */
        return taken == -1 ? Py_NewRef(NOT_BASIC) : NULL;
    u.depth = 0;
    u.depth_cap = depth_cap();
    memset(u.verdict, -1, sizeof(u.verdict));
    memset(u.texts, 0, sizeof(u.texts));
    PyObject *result = unjelly_any(&u, sexp);
    if (result == NOT_BASIC)
        Py_INCREF(result);
    for (int i = 0; i < TEXT_CACHE_SLOTS; i++) {
        Py_XDECREF(u.texts[i].data);
        Py_XDECREF(u.texts[i].text);
    }
    return result;
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef speedups_methods[] = {
    {"encode", speedups_encode, METH_VARARGS, "Banana bytes for a value, or None (see module)."},
    {"scan", speedups_scan, METH_VARARGS, "One pass of the banana decoder (see module)."},
    {"unjelly", speedups_unjelly, METH_VARARGS,
     "The value of a basic s-expression, or NotImplemented (see module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "spread._speedups",
    "The codec's and the unjellier's hot loops in C (optional; see _speedups.c).", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
