/* wheelyard: the C API names CPython 3.13 removed, defined from the public functions that replace
 * them (each has one with the same meaning since 3.9, 3.11 or 3.13), the arguments that 3.13
 * added to _PyLong_AsByteArray (Cython 0.29's C calls it with five), and Cython 0.29's own
 * switches set so that its C takes the public API instead of interpreter internals that
 * changed after it was generated (the paths it takes on PyPy).
 *
 * Forced into every C and C++ compile of a build (-include) by the remedies that name it
 * (builder/diagnosis/remedies.toml: kind compat-header, or regenerate-cython with a header). It
 * includes only Python's patchlevel.h (macros: the version it builds for) and does nothing for a
 * Python before 3.13 or a compile that has no Python headers. Every name is a macro (or a static
 * inline function of wheelyard_ names), expanded where the sdist's code uses it, after its own
 * #include <Python.h>; the statement expressions are GCC's and Clang's (Linux builds). */
#ifndef WHEELYARD_PY313_COMPAT_H
#define WHEELYARD_PY313_COMPAT_H
#if defined(__has_include)
#if __has_include(<patchlevel.h>)
#include <patchlevel.h>
#endif
#endif
#if defined(PY_VERSION_HEX) && PY_VERSION_HEX >= 0x030D0000

/* Cython's switches (each is only defined when the C has not defined it): the layout of ints
 * (longintrepr.h, ob_digit: 3.11, 3.12), the thread state's exception fields (3.12) and dict
 * versions (3.12). */
#ifndef CYTHON_USE_PYLONG_INTERNALS
#define CYTHON_USE_PYLONG_INTERNALS 0
#endif
#ifndef CYTHON_FAST_THREAD_STATE
#define CYTHON_FAST_THREAD_STATE 0
#endif
#ifndef CYTHON_USE_DICT_VERSIONS
#define CYTHON_USE_DICT_VERSIONS 0
#endif
/* 3.13 no longer says that <stdarg.h> has prototypes (it always has). */
#ifndef HAVE_STDARG_PROTOTYPES
#define HAVE_STDARG_PROTOTYPES 1
#endif

/* _PyLong_AsByteArray(v, bytes, n, little_endian, is_signed[, with_exceptions]): five arguments
 * get with_exceptions = 1 (what the five-argument function did); six are left as they are, so
 * that Python.h's own declaration and code written for 3.13 still read the same. */
#define WHEELYARD_LABA6(v, b, n, l, s, e) _PyLong_AsByteArray(v, b, n, l, s, e)
#define WHEELYARD_LABA5(v, b, n, l, s) _PyLong_AsByteArray(v, b, n, l, s, 1)
#define WHEELYARD_PICK6(a1, a2, a3, a4, a5, a6, name, ...) name
#define _PyLong_AsByteArray(...) \
    WHEELYARD_PICK6(__VA_ARGS__, WHEELYARD_LABA6, WHEELYARD_LABA5, , , , , )(__VA_ARGS__)

/* Float packing: public since 3.11 (char pointers where the private ones took unsigned char). */
#define _PyFloat_Pack2(x, p, le) PyFloat_Pack2((x), (char *)(p), (le))
#define _PyFloat_Pack4(x, p, le) PyFloat_Pack4((x), (char *)(p), (le))
#define _PyFloat_Pack8(x, p, le) PyFloat_Pack8((x), (char *)(p), (le))
#define _PyFloat_Unpack2(p, le) PyFloat_Unpack2((const char *)(p), (le))
#define _PyFloat_Unpack4(p, le) PyFloat_Unpack4((const char *)(p), (le))
#define _PyFloat_Unpack8(p, le) PyFloat_Unpack8((const char *)(p), (le))

/* Calls: the PyEval_Call* functions (deprecated since 3.9) and the private call helpers. */
#define PyEval_CallObject(callable, args) PyObject_CallObject((callable), (args))
#define PyEval_CallObjectWithKeywords(callable, args, kwargs) \
    ((kwargs) == NULL ? PyObject_CallObject((callable), (args)) : PyObject_Call((callable), (args), (kwargs)))
#define PyEval_CallFunction PyObject_CallFunction
#define PyEval_CallMethod PyObject_CallMethod
#define _PyObject_CallNoArg(callable) PyObject_CallNoArgs(callable)
#define _PyObject_FastCall(callable, args, nargs) PyObject_Vectorcall((callable), (args), (size_t)(nargs), NULL)

/* Interpreter state (threads are always initialised since 3.7). */
#define PyEval_ThreadsInitialized() 1
#define _PyInterpreterState_Get() PyInterpreterState_Get()
#define _Py_IsFinalizing() Py_IsFinalizing()

/* The old buffer protocol (removed in 3.10): the pointer the new one gives, released at once,
 * which is what these functions did. */
#define WHEELYARD_AS_BUFFER(obj, buffer, buffer_len, flags, type) \
    __extension__({ \
        Py_buffer wheelyard_view; \
        int wheelyard_rc = PyObject_GetBuffer((obj), &wheelyard_view, (flags)); \
        if (wheelyard_rc == 0) { \
            *(buffer) = (type)wheelyard_view.buf; \
            *(buffer_len) = wheelyard_view.len; \
            PyBuffer_Release(&wheelyard_view); \
        } \
        wheelyard_rc; \
    })
#define PyObject_AsReadBuffer(obj, buffer, buffer_len) \
    WHEELYARD_AS_BUFFER(obj, buffer, buffer_len, PyBUF_SIMPLE, const void *)
#define PyObject_AsCharBuffer(obj, buffer, buffer_len) \
    WHEELYARD_AS_BUFFER(obj, buffer, buffer_len, PyBUF_SIMPLE, const char *)
#define PyObject_AsWriteBuffer(obj, buffer, buffer_len) \
    WHEELYARD_AS_BUFFER(obj, buffer, buffer_len, PyBUF_WRITABLE, void *)

/* The trashcan of deallocators (deprecated since 3.11): the same guard for any type. */
#define Py_TRASHCAN_SAFE_BEGIN(op) Py_TRASHCAN_BEGIN((PyObject *)(op), Py_TYPE(op)->tp_dealloc)
#define Py_TRASHCAN_SAFE_END(op) Py_TRASHCAN_END

/* Attributes and strings (strings are always ready since 3.12). */
#define _PyObject_LookupAttr(obj, name, result) PyObject_GetOptionalAttr((obj), (name), (result))
#define _PyUnicode_Ready(op) ((void)(op), 0)
#define _PyUnicode_FastCopyCharacters(to, to_start, from, from_start, how_many) \
    ((void)PyUnicode_CopyCharacters((to), (to_start), (from), (from_start), (how_many)))
#define _PyGC_FINALIZED(op) PyObject_GC_IsFinalized((PyObject *)(op))
#define _PyList_Extend(list, iterable) \
    (PyList_Extend((PyObject *)(list), (iterable)) < 0 ? NULL : Py_NewRef(Py_None))

/* Cython 0.29 reads only the optimisation level of the interpreter's configuration: the same
 * as Py_OptimizeFlag (deprecated, still there in 3.13). */
#ifdef __cplusplus
extern "C" int Py_OptimizeFlag;
#else
extern int Py_OptimizeFlag;
#endif
struct wheelyard_interpreter_config {
    int optimization_level;
};
static inline const struct wheelyard_interpreter_config *wheelyard_get_config(void) {
    static struct wheelyard_interpreter_config config;
    config.optimization_level = Py_OptimizeFlag;
    return &config;
}
#define _PyInterpreterState_GetConfig(interp) ((void)(interp), wheelyard_get_config())

/* A generator's return value, as StopIteration(value) (what the removed function raised). */
#define _PyGen_SetStopIterationValue(value) \
    __extension__({ \
        PyObject *wheelyard_stop = PyObject_CallOneArg(PyExc_StopIteration, (value)); \
        if (wheelyard_stop != NULL) { \
            PyErr_SetObject(PyExc_StopIteration, wheelyard_stop); \
            Py_DECREF(wheelyard_stop); \
        } \
        wheelyard_stop != NULL ? 0 : -1; \
    })

/* Cython 0.29 compares a type's tp_iternext with this placeholder, which 3.13 no longer
 * exports: no type's slot is this function, so the generic path (which handles the error the
 * call raised) is taken. */
struct _object;
static inline struct _object *wheelyard_next_not_implemented(struct _object *self) { (void)self; return 0; }
#define _PyObject_NextNotImplemented wheelyard_next_not_implemented

#endif /* Python 3.13 or later */
#endif
