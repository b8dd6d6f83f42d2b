/* Byte-plane kernels: the loops of ckptvc.objects.codecs that numpy runs as byte-strided
 * copies (one pass per plane) or as several whole-array passes, each here as one pass
 * that the compiler vectorises. Optional: ckptvc.objects.planes_kernels falls back to
 * numpy when this module is not built, with the same results byte for byte.
 *
 *   weave(out, parts, sizes)    element j of out = part 0's j-th item of sizes[0] bytes,
 *                               then part 1's j-th item of sizes[1] bytes, ...
 *   unweave(raw, outs, sizes)   the inverse; an out of None is skipped
 *   zigzag16_sub(own, base, out)     out = zigzag(own - base), uint16 elements
 *   unzigzag16_add(zz, base)         zz = base + unzigzag(zz), in place
 *
 * Every function checks every length before touching a byte and releases the GIL while
 * it loops. Multi-byte items are little-endian, as in the stored format; on a big-endian
 * host the byte loops run (the word loops assume little-endian).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_PARTS 16

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORDS_LE 1
#else
#define WORDS_LE 0
#endif

#if defined(__GNUC__)
typedef uint16_t __attribute__((aligned(1), may_alias)) u16u;
typedef uint32_t __attribute__((aligned(1), may_alias)) u32u;
#define HAVE_UNALIGNED 1
#else
#define HAVE_UNALIGNED 0
#endif

static void weave_bytes(uint8_t *out, const uint8_t **parts, const Py_ssize_t *sizes, int count, Py_ssize_t n,
                        Py_ssize_t width) {
    Py_ssize_t at = 0;
    for (int i = 0; i < count; i++) {
        const uint8_t *p = parts[i];
        Py_ssize_t s = sizes[i];
        for (Py_ssize_t j = 0; j < n; j++)
            memcpy(out + j * width + at, p + j * s, (size_t)s);
        at += s;
    }
}

static void unweave_bytes(const uint8_t *raw, uint8_t **outs, const Py_ssize_t *sizes, int count, Py_ssize_t n,
                          Py_ssize_t width) {
    Py_ssize_t at = 0;
    for (int i = 0; i < count; i++) {
        uint8_t *o = outs[i];
        Py_ssize_t s = sizes[i];
        if (o != NULL)
            for (Py_ssize_t j = 0; j < n; j++)
                memcpy(o + j * s, raw + j * width + at, (size_t)s);
        at += s;
    }
}

#if WORDS_LE && HAVE_UNALIGNED
static void weave_1111(uint8_t *out, const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *d,
                       Py_ssize_t n) {
    u32u *o = (u32u *)out;
    for (Py_ssize_t j = 0; j < n; j++)
        o[j] = (uint32_t)a[j] | ((uint32_t)b[j] << 8) | ((uint32_t)c[j] << 16) | ((uint32_t)d[j] << 24);
}

static void weave_11(uint8_t *out, const uint8_t *a, const uint8_t *b, Py_ssize_t n) {
    u16u *o = (u16u *)out;
    for (Py_ssize_t j = 0; j < n; j++)
        o[j] = (uint16_t)(a[j] | (b[j] << 8));
}

static void weave_112(uint8_t *out, const uint8_t *a, const uint8_t *b, const uint8_t *w, Py_ssize_t n) {
    u32u *o = (u32u *)out;
    const u16u *t = (const u16u *)w;
    for (Py_ssize_t j = 0; j < n; j++)
        o[j] = (uint32_t)a[j] | ((uint32_t)b[j] << 8) | ((uint32_t)t[j] << 16);
}

static void unweave_1111(const uint8_t *raw, uint8_t *a, uint8_t *b, uint8_t *c, uint8_t *d, Py_ssize_t n) {
    const u32u *r = (const u32u *)raw;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint32_t v = r[j];
        a[j] = (uint8_t)v;
        b[j] = (uint8_t)(v >> 8);
        c[j] = (uint8_t)(v >> 16);
        d[j] = (uint8_t)(v >> 24);
    }
}

static void unweave_11(const uint8_t *raw, uint8_t *a, uint8_t *b, Py_ssize_t n) {
    const u16u *r = (const u16u *)raw;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint16_t v = r[j];
        a[j] = (uint8_t)v;
        b[j] = (uint8_t)(v >> 8);
    }
}

static void unweave_22(const uint8_t *raw, uint8_t *lo, uint8_t *hi, Py_ssize_t n) {
    const u32u *r = (const u32u *)raw;
    u16u *l = (u16u *)lo, *h = (u16u *)hi;
    if (lo == NULL) {
        for (Py_ssize_t j = 0; j < n; j++)
            h[j] = (uint16_t)(r[j] >> 16);
    } else if (hi == NULL) {
        for (Py_ssize_t j = 0; j < n; j++)
            l[j] = (uint16_t)r[j];
    } else {
        for (Py_ssize_t j = 0; j < n; j++) {
            uint32_t v = r[j];
            l[j] = (uint16_t)v;
            h[j] = (uint16_t)(v >> 16);
        }
    }
}
#endif

static int parse_sizes(PyObject *seq, Py_ssize_t *sizes, int *count, Py_ssize_t *width) {
    PyObject *fast = PySequence_Fast(seq, "sizes must be a sequence");
    if (fast == NULL)
        return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    if (k < 1 || k > MAX_PARTS) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "between 1 and 16 parts");
        return -1;
    }
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_ssize_t s = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
        if (s == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (s < 1 || s > 64) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "item sizes must be 1..64 bytes");
            return -1;
        }
        sizes[i] = s;
        w += s;
    }
    Py_DECREF(fast);
    *count = (int)k;
    *width = w;
    return 0;
}

static void release_all(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++)
        if (views[i].obj != NULL)
            PyBuffer_Release(&views[i]);
}

/* The buffers of a sequence of parts, each of n * sizes[i] bytes (None allowed when
 * `optional`). Returns 0, or -1 with an exception set and nothing held. */
static int get_parts(PyObject *seq, Py_buffer *views, int count, const Py_ssize_t *sizes, Py_ssize_t n, int flags,
                     int optional) {
    PyObject *fast = PySequence_Fast(seq, "parts must be a sequence");
    if (fast == NULL)
        return -1;
    memset(views, 0, sizeof(Py_buffer) * (size_t)count);
    if (PySequence_Fast_GET_SIZE(fast) != count) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "one part per size");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (item == Py_None && optional)
            continue;
        if (PyObject_GetBuffer(item, &views[i], flags | PyBUF_C_CONTIGUOUS) < 0) {
            views[i].obj = NULL;
            release_all(views, count);
            Py_DECREF(fast);
            return -1;
        }
        if (views[i].len != n * sizes[i]) {
            release_all(views, count);
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "a part's length does not match the output's");
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

/* What weave and unweave share: the item sizes, the element count n of `whole` (the
 * interleaved buffer, already held), and the buffers of the parts, each n items long.
 * Returns 0, or -1 with an exception set and `whole` released. */
static int prepare(Py_buffer *whole, PyObject *parts_seq, PyObject *sizes_seq, Py_buffer *views, Py_ssize_t *sizes,
                   int *count, Py_ssize_t *n, Py_ssize_t *width, int flags, int optional) {
    if (parse_sizes(sizes_seq, sizes, count, width) < 0) {
        PyBuffer_Release(whole);
        return -1;
    }
    if (whole->len % *width) {
        PyBuffer_Release(whole);
        PyErr_SetString(PyExc_ValueError, "the interleaved length is not a multiple of the element width");
        return -1;
    }
    *n = whole->len / *width;
    if (get_parts(parts_seq, views, *count, sizes, *n, flags, optional) < 0) {
        PyBuffer_Release(whole);
        return -1;
    }
    return 0;
}

static PyObject *weave(PyObject *self, PyObject *args) {
    Py_buffer out;
    PyObject *parts_seq, *sizes_seq;
    if (!PyArg_ParseTuple(args, "w*OO", &out, &parts_seq, &sizes_seq))
        return NULL;
    Py_ssize_t sizes[MAX_PARTS], n, width;
    int count;
    Py_buffer views[MAX_PARTS];
    if (prepare(&out, parts_seq, sizes_seq, views, sizes, &count, &n, &width, PyBUF_SIMPLE, 0) < 0)
        return NULL;
    const uint8_t *p[MAX_PARTS];
    for (int i = 0; i < count; i++)
        p[i] = (const uint8_t *)views[i].buf;
    uint8_t *o = (uint8_t *)out.buf;
    Py_BEGIN_ALLOW_THREADS
#if WORDS_LE && HAVE_UNALIGNED
    if (count == 4 && width == 4)
        weave_1111(o, p[0], p[1], p[2], p[3], n);
    else if (count == 2 && width == 2)
        weave_11(o, p[0], p[1], n);
    else if (count == 3 && sizes[0] == 1 && sizes[1] == 1 && sizes[2] == 2)
        weave_112(o, p[0], p[1], p[2], n);
    else
#endif
        weave_bytes(o, p, sizes, count, n, width);
    Py_END_ALLOW_THREADS
    release_all(views, count);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *unweave(PyObject *self, PyObject *args) {
    Py_buffer raw;
    PyObject *outs_seq, *sizes_seq;
    if (!PyArg_ParseTuple(args, "y*OO", &raw, &outs_seq, &sizes_seq))
        return NULL;
    Py_ssize_t sizes[MAX_PARTS], n, width;
    int count;
    Py_buffer views[MAX_PARTS];
    if (prepare(&raw, outs_seq, sizes_seq, views, sizes, &count, &n, &width, PyBUF_WRITABLE, 1) < 0)
        return NULL;
    uint8_t *o[MAX_PARTS];
    for (int i = 0; i < count; i++)
        o[i] = views[i].obj != NULL ? (uint8_t *)views[i].buf : NULL;
    const uint8_t *r = (const uint8_t *)raw.buf;
    Py_BEGIN_ALLOW_THREADS
#if WORDS_LE && HAVE_UNALIGNED
    if (count == 4 && width == 4 && o[0] && o[1] && o[2] && o[3])
        unweave_1111(r, o[0], o[1], o[2], o[3], n);
    else if (count == 2 && width == 2 && o[0] && o[1])
        unweave_11(r, o[0], o[1], n);
    else if (count == 2 && sizes[0] == 2 && sizes[1] == 2)
        unweave_22(r, o[0], o[1], n);
    else
#endif
        unweave_bytes(r, o, sizes, count, n, width);
    Py_END_ALLOW_THREADS
    release_all(views, count);
    PyBuffer_Release(&raw);
    Py_RETURN_NONE;
}

#if WORDS_LE && HAVE_UNALIGNED
static void zigzag16_sub_loop(const void *own, const void *base, void *out, Py_ssize_t n) {
    const u16u *restrict a = own, *restrict b = base;
    u16u *restrict o = out;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint16_t d = (uint16_t)(a[j] - b[j]);
        o[j] = (uint16_t)((uint16_t)(d << 1) ^ (uint16_t)(0 - (d >> 15)));
    }
}

static void unzigzag16_add_loop(void *zz, const void *base, Py_ssize_t n) {
    u16u *restrict z = zz;
    const u16u *restrict b = base;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint16_t v = z[j];
        z[j] = (uint16_t)(((v >> 1) ^ (uint16_t)(0 - (v & 1))) + b[j]);
    }
}
#else
static inline uint16_t load16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void store16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void zigzag16_sub_loop(const void *own, const void *base, void *out, Py_ssize_t n) {
    const uint8_t *a = own, *b = base;
    uint8_t *o = out;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint16_t d = (uint16_t)(load16(a + 2 * j) - load16(b + 2 * j));
        store16(o + 2 * j, (uint16_t)((uint16_t)(d << 1) ^ (uint16_t)(0 - (d >> 15))));
    }
}

static void unzigzag16_add_loop(void *zz, const void *base, Py_ssize_t n) {
    uint8_t *z = zz;
    const uint8_t *b = base;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint16_t v = load16(z + 2 * j);
        store16(z + 2 * j, (uint16_t)(((v >> 1) ^ (uint16_t)(0 - (v & 1))) + load16(b + 2 * j)));
    }
}
#endif

/* Buffers may overlap only where documented (unzigzag16_add works in place on zz; its
 * base must not overlap zz): the loops are compiled as if they do not. */
static PyObject *zigzag16_sub(PyObject *self, PyObject *args) {
    Py_buffer own, base, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &own, &base, &out))
        return NULL;
    if (own.len != base.len || own.len != out.len || own.len % 2) {
        PyBuffer_Release(&own);
        PyBuffer_Release(&base);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "three buffers of the same even length");
        return NULL;
    }
    Py_ssize_t n = own.len / 2;
    Py_BEGIN_ALLOW_THREADS
    zigzag16_sub_loop(own.buf, base.buf, out.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&own);
    PyBuffer_Release(&base);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *unzigzag16_add(PyObject *self, PyObject *args) {
    Py_buffer zz, base;
    if (!PyArg_ParseTuple(args, "w*y*", &zz, &base))
        return NULL;
    if (zz.len != base.len || zz.len % 2) {
        PyBuffer_Release(&zz);
        PyBuffer_Release(&base);
        PyErr_SetString(PyExc_ValueError, "two buffers of the same even length");
        return NULL;
    }
    Py_ssize_t n = zz.len / 2;
    Py_BEGIN_ALLOW_THREADS
    unzigzag16_add_loop(zz.buf, base.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&zz);
    PyBuffer_Release(&base);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"weave", weave, METH_VARARGS, "weave(out, parts, sizes): interleave items of parts into out"},
    {"unweave", unweave, METH_VARARGS, "unweave(raw, outs, sizes): the inverse of weave; None outs are skipped"},
    {"zigzag16_sub", zigzag16_sub, METH_VARARGS, "zigzag16_sub(own, base, out): out = zigzag(own - base), u16 LE"},
    {"unzigzag16_add", unzigzag16_add, METH_VARARGS, "unzigzag16_add(zz, base): zz = base + unzigzag(zz), in place"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_planes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
