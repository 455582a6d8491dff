"""The opcode pre-scan of data.pkl: refuses nesting and memo indices that could crash or
exhaust CPython, before anything is unpickled."""

from __future__ import annotations

import array
import functools
import io
import itertools
import pickletools
import re
import struct
import sys

from plancheck.errors import CheckpointError
from plancheck.inputs.checkpoint.records import MAX_PICKLE_NESTING, _describe


# --------------------------------------------------------------------------- pre-scan
#
# The rule. Before unpickling, data.pkl's opcodes -- as pickletools.genops reads them,
# up to the first STOP -- are run on an abstract stack of nesting depths: a leaf pushes 0,
# an empty container 1, a container built from stack items 1 + the deepest of them, a
# call (REDUCE, NEWOBJ, BUILD) the deepest of its operands; APPEND(S), SETITEM(S) and
# ADDITEMS raise their container to 1 + the deepest item added; PUT remembers the depth
# on top of the stack, GET pushes it back. data.pkl is refused when a depth exceeds
# MAX_PICKLE_NESTING, when a memo index is larger than the opcode's ordinal, when the
# opcodes cannot be read (unknown opcode, truncated argument, bad text or UTF-8 argument,
# no STOP), and when the walk itself fails (stack underflow, no MARK, a MARK beyond the
# stack, GET of an index never PUT).
#
# The walker (_walk). A hand-written loop over the bytes decides exactly that rule (the
# tests hold it against the pickletools-based implementation it replaced, on real, mutated
# and generated pickles): the opcodes protocol 2 pickles are made of are decoded inline,
# every other opcode through pickletools' own argument readers (_scan_other), unknown
# bytes are refused. Memo depths live in a bytearray (a depth is at most
# MAX_PICKLE_NESTING < _UNDEFINED). Shortcuts keep it cheap without changing the answer:
#   * memo indices as picklers write them -- each PUT the next free slot -- are checked
#     against the number of PUTs read so far, a lower bound of the opcode's ordinal; the
#     ordinal itself is counted (_Memo.ordinal) only for an index above that bound;
#   * a tensor record as torch.save writes it (_tensor_record_pattern), and a run of the
#     {name: {"version": n}} entries of a state_dict's _metadata (_dict_entries), are
#     matched by a regular expression and applied as a whole -- when their GETs fetch
#     depth-0 entries and their PUTs fill the next free slots, in order; anything else is
#     walked opcode by opcode.
# On a 410 MB ResEnc-L checkpoint (39k opcodes) this takes ~3.5 ms; the same rule over
# pickletools.genops took ~25 ms. (The patterns compile on first use, ~12 ms once.)

#: Opcode byte -> pickletools' description: the opcodes genops knows, and no others.
_OPCODES: dict[int, pickletools.OpcodeInfo] = {
    op.code.encode("latin-1")[0]: op for op in pickletools.opcodes
}
#: Memo slot that no PUT has filled (a depth is at most MAX_PICKLE_NESTING).
_UNDEFINED = 255
assert MAX_PICKLE_NESTING < _UNDEFINED
_u32 = struct.Struct("<I").unpack_from

_PUSH_LEAF = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "NONE", "NEWTRUE",
    "NEWFALSE", "GLOBAL", "PERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
})
_PUSH_EMPTY = frozenset({"EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"})
_FROM_MARK_BUILD = frozenset({"LIST", "TUPLE", "DICT", "FROZENSET", "INST", "OBJ"})
_FROM_MARK_EXTEND = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})
_POP_N_PUSH = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2,
               "NEWOBJ_EX": 3, "STACK_GLOBAL": 2, "BINPERSID": 1}
_MEMO_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"})


def _too_deep() -> CheckpointError:
    return CheckpointError(
        f"data.pkl nests objects deeper than {MAX_PICKLE_NESTING} levels: refusing"
    )


def _never_put(idx: int) -> ValueError:
    return ValueError(f"pickle GET of memo index {idx}, which no PUT filled")


def _prescan(data: bytes) -> None:
    """Walk data.pkl's opcodes without building anything; refuse what would crash CPython.

    Tracks how deeply each stack item nests (at construction) and refuses nesting over
    :data:`MAX_PICKLE_NESTING`; refuses memo indices beyond the opcodes read so far (the
    C unpickler sizes its memo by the largest index). Raises ValueError (or
    UnicodeDecodeError) for malformed pickles; the caller turns those into CheckpointError.
    The rule in full is described above.
    """
    try:
        _walk(data)
    except (IndexError, struct.error) as e:  # an argument or opcode past the end, or a pop
        raise ValueError("pickle exhausted before seeing STOP, or its stack underflows"
                         f" ({_describe(e)})") from None


def _walk(data: bytes) -> None:
    stack: list[int] = []
    push = stack.append
    pop = stack.pop
    marks: list[int] = []
    md = bytearray()  # memo index -> depth, _UNDEFINED where no PUT has been
    memo = _Memo()  # what the fast paths never need
    good = {b""}  # GET opcodes (with argument) known to fetch a depth-0 entry; b"": no GET
    n_puts = 0  # memo-storing opcodes so far: a lower bound of the current opcode's ordinal
    record = _tensor_record_pattern().match
    record_depths = _TENSOR_RECORD_DEPTHS
    put_run = _PUT_RUN
    covered = _put_run_covers(put_run) - 9  # a record from below here fills slots in put_run
    no_run_before = 0
    u32 = _u32
    end = len(data)
    deepest = MAX_PICKLE_NESTING
    i = 0
    # Ordered by how often they occur in torch checkpoints; each branch leaves i at the next opcode.
    while True:
        op = data[i]
        if op == 0x72:  # r LONG_BINPUT
            idx = u32(data, i + 1)[0]
            if idx == len(md) and idx <= n_puts:
                md.append(stack[-1])
            else:
                memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i += 5
        elif op == 0x58:  # X BINUNICODE
            j = i + 5 + u32(data, i + 1)[0]
            if j > end:
                raise ValueError("pickle exhausted before seeing STOP (truncated BINUNICODE)")
            k = data[j]  # (peeks stay within the bytes: the rule may refuse the PUT first)
            if (k == 0x72 and j + 5 < end and data[j + 5] == 0x7D
                    or k == 0x71 and j + 2 < end and data[j + 2] == 0x7D) \
                    and i >= no_run_before:  # X PUT } PUT: {name: {"version": n}} entries?
                n = len(md)
                k = _dict_entries(data, i, md, n_puts, good, stack)
                if k > 0:
                    n_puts += len(md) - n
                    i = k
                    continue
                no_run_before = -k  # (a run that does not qualify: not again within it)
            str(data[i + 5:j], "utf-8", "surrogatepass")  # as genops decodes it
            push(0)
            i = j
            if data[i] == 0x72 and u32(data, i + 1)[0] == len(md) <= n_puts:  # and its PUT
                md.append(0)
                n_puts += 1
                i += 5
        elif op == 0x4B:  # K BININT1
            push(0)
            i += 2
        elif op == 0x68 or op == 0x6A:  # h BINGET, j LONG_BINGET
            j = i + 2 if op == 0x68 else i + 5
            if data[j] == 0x28 and data[j + 1] == 0x28:  # GET MARK MARK: a tensor record?
                m = record(data, i)
                at_get = i
                while m is not None:  # this record, and the named ones right after it
                    name_put, fn, storage, stype, key_put, key_get, location, pid, size, \
                        stride, hooks_fn, hooks, args, tensor = m.groups(b"")
                    first = len(md)
                    if first > n_puts or not (
                            good.issuperset((fn, storage, stype, key_get, location, hooks_fn))
                            or _depth0_gets(md, good, fn, storage, stype, key_get, location,
                                            hooks_fn)):
                        break
                    puts = b"".join((name_put, key_put, pid, size, stride, hooks, args, tensor))
                    if first < covered:
                        if not put_run.startswith(puts, _put_offset(first)):
                            break
                    elif _sequential_puts(first, puts):
                        put_run = _PUT_RUN  # (grown)
                        covered = _put_run_covers(put_run) - 9
                    else:
                        break
                    if name_put:
                        md.append(0)
                        push(0)
                    depths = record_depths[(key_put != b"") + 2 * (size != b"")
                                           + 4 * (stride != b"")]
                    md += depths
                    n_puts = len(md) - first + n_puts
                    push(2)
                    i = m.end()
                    m = record(data, i) if data[i] == 0x58 else None
                if i != at_get:
                    continue
            idx = data[i + 1] if op == 0x68 else u32(data, i + 1)[0]
            if idx >= len(md) or md[idx] == _UNDEFINED:
                raise _never_put(idx)
            push(md[idx])
            i = j
        elif op == 0x7D or op == 0x29 or op == 0x5D:  # EMPTY_DICT, EMPTY_TUPLE, EMPTY_LIST
            push(1)
            i += 1
            if data[i] == 0x72 and u32(data, i + 1)[0] == len(md) <= n_puts:  # and its PUT
                md.append(1)
                n_puts += 1
                i += 5
        elif op == 0x73:  # s SETITEM
            v = pop()
            k = pop()
            d = stack[-1]
            if k >= d:
                d = k + 1
            if v >= d:
                d = v + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x28:  # ( MARK
            marks.append(len(stack))
            i += 1
        elif op == 0x74:  # t TUPLE
            start = marks.pop()
            if start > len(stack):
                raise ValueError("pickle mark beyond the stack")
            d = max(stack[start:], default=0) + 1
            if d > deepest:
                raise _too_deep()
            stack[start:] = (d,)
            i += 1
        elif op == 0x52:  # R REDUCE
            v = pop()
            if v > stack[-1]:
                stack[-1] = v
            i += 1
        elif op == 0x4D:  # M BININT2
            push(0)
            i += 3
        elif op == 0x85:  # TUPLE1
            d = stack[-1] + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x86:  # TUPLE2
            v = pop()
            d = stack[-1]
            d = (v if v > d else d) + 1
            if d > deepest:
                raise _too_deep()
            stack[-1] = d
            i += 1
        elif op == 0x65 or op == 0x75:  # e APPENDS, u SETITEMS
            start = marks.pop()
            if start > len(stack):
                raise ValueError("pickle mark beyond the stack")
            d = max(stack[start:], default=0) + 1
            del stack[start:]
            if d > stack[-1]:
                if d > deepest:
                    raise _too_deep()
                stack[-1] = d
            i += 1
        elif op == 0x47 or op == 0x4A:  # G BINFLOAT, J BININT
            push(0)
            i += 9 if op == 0x47 else 5
        elif op == 0x71:  # q BINPUT
            idx = data[i + 1]
            if idx == len(md) and idx <= n_puts:
                md.append(stack[-1])
            else:
                memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i += 2
        elif op == 0x89 or op == 0x88 or op == 0x4E:  # NEWFALSE, NEWTRUE, NONE
            push(0)
            i += 1
        elif op == 0x51:  # Q BINPERSID
            stack[-1] = 0
            i += 1
        elif op == 0x2E:  # . STOP
            return
        elif op == 0x70 or op == 0x94:  # p PUT, MEMOIZE
            if op == 0x94:
                idx, j = memo.size(md), i + 1
            else:
                idx, j = _text_arg(data, i)
            memo.put(data, i, idx, md, n_puts, stack, good)
            n_puts += 1
            i = j
        elif op == 0x67:  # g GET
            idx, i = _text_arg(data, i)
            push(memo.get(idx, md))
        else:
            i = _scan_other(data, i, op, stack, marks)


def _text_arg(data: bytes, i: int) -> tuple[int, int]:
    """The decimal argument of PUT / GET at *i*, read as genops reads it; the next position."""
    f = io.BytesIO(data)
    f.seek(i + 1)
    return int(pickletools.read_decimalnl_short(f)), f.tell()


class _Memo:
    """The walk's memo beyond the common case: out-of-order and negative indices, ordinals."""

    __slots__ = ("negative", "holes", "ordinal_at")

    def __init__(self) -> None:
        self.negative: dict[int, int] = {}  # text PUT takes any integer, also a negative one
        self.holes = 0  # _UNDEFINED slots below len(md)
        self.ordinal_at = (0, 0)  # (position, ordinal) of an opcode counted already

    def size(self, md: bytearray) -> int:
        """How many indices are filled: MEMOIZE's index."""
        return len(md) - self.holes + len(self.negative)

    def get(self, idx: int, md: bytearray) -> int:
        if idx < 0 and idx in self.negative:
            return self.negative[idx]
        if idx < 0 or idx >= len(md) or md[idx] == _UNDEFINED:
            raise _never_put(idx)
        return md[idx]

    def put(self, data: bytes, pos: int, idx: int, md: bytearray, n_puts: int,
            stack: list[int], good: set[bytes]) -> None:
        if idx > n_puts and idx > self.ordinal(data, pos):
            raise ValueError(f"pickle memo index {idx} out of range")
        depth = stack[-1]
        good.clear()  # an entry may change: forget which GETs fetch depth 0
        good.add(b"")
        if idx < 0:
            self.negative[idx] = depth
            return
        if idx >= len(md):  # bounded: idx <= ordinal < len(data)
            self.holes += idx - len(md)
            md.extend(b"\xff" * (idx - len(md)))
            md.append(depth)
        else:
            if md[idx] == _UNDEFINED:
                self.holes -= 1
            md[idx] = depth

    def ordinal(self, data: bytes, pos: int) -> int:
        """How many opcodes precede the one at *pos* (counted once per walk, left to right)."""
        start, n = self.ordinal_at
        if pos < start:  # pragma: no cover - the walk only moves forward
            start, n = 0, 0
        f = io.BytesIO(data)
        f.seek(start)
        for k, (_, _, at) in enumerate(pickletools.genops(f)):
            if at == pos:
                self.ordinal_at = (pos, n + k)
                return n + k
            if at > pos:  # pragma: no cover - the walker reads opcodes as genops does
                break
        raise ValueError("pickle opcodes out of step")  # pragma: no cover


def _scan_other(data: bytes, i: int, op: int, stack: list[int], marks: list[int]) -> int:
    """The rule for one opcode the walker's fast branches leave out; the next position."""
    info = _OPCODES.get(op)
    if info is None:
        raise ValueError(f"at position {i}, opcode {bytes([op])!r} unknown")
    name = info.name
    if name in _MEMO_OPS:  # pragma: no cover - the walker handles every memo opcode
        raise AssertionError(name)
    arg = info.arg
    if arg is None:
        i += 1
    elif arg.n >= 0:  # fixed size: genops checks only that the bytes are there
        i += 1 + arg.n
        if i > len(data):
            raise ValueError(f"pickle exhausted before seeing STOP (truncated {name})")
    else:
        f = io.BytesIO(data)
        f.seek(i + 1)
        arg.reader(f)  # the exact checks genops makes: lengths, newlines, decoding
        i = f.tell()

    def push(depth: int) -> None:
        if depth > MAX_PICKLE_NESTING:
            raise _too_deep()
        stack.append(depth)

    if name in _PUSH_LEAF:
        push(0)
    elif name in _PUSH_EMPTY:
        push(1)
    elif name in _POP_N_PUSH:
        n = _POP_N_PUSH[name]
        if len(stack) < n:
            raise ValueError(f"pickle stack underflow at {name}")
        items = stack[-n:]
        del stack[-n:]
        push(0 if name in ("STACK_GLOBAL", "BINPERSID")
             else 1 + max(items) if name.startswith("TUPLE") else max(items))
    elif name in _FROM_MARK_BUILD:
        push(1 + max(_pop_mark(stack, marks), default=0))
    elif name in _FROM_MARK_EXTEND:
        items = _pop_mark(stack, marks)
        stack[-1] = max(stack[-1], 1 + max(items, default=0))
        push(stack.pop())
    elif name == "APPEND":
        v = stack.pop()
        push(max(stack.pop(), v + 1))
    elif name == "SETITEM":
        v, k = stack.pop(), stack.pop()
        push(max(stack.pop(), k + 1, v + 1))
    elif name == "BUILD":
        state = stack.pop()
        push(max(stack.pop(), state))
    elif name == "MARK":
        marks.append(len(stack))
    elif name == "POP":
        stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack, marks)
    elif name == "DUP":
        push(stack[-1])
    # PROTO, FRAME, READONLY_BUFFER, READWRITE_BUFFER, STOP: no effect on nesting (STOP
    # itself ends the walk before it gets here)
    return i


def _pop_mark(stack: list[int], marks: list[int]) -> list[int]:
    start = marks.pop()
    if start > len(stack):
        raise ValueError("pickle mark beyond the stack")
    items = stack[start:]
    del stack[start:]
    return items


# A tensor as torch.save pickles it (protocol 2): _rebuild_tensor_v2(storage, offset, size,
# stride, requires_grad, OrderedDict()) with a persistent storage reference --
#   GET fn ( ( GET "storage" GET FloatStorage X"key" PUT|GET key GET "cpu" INT t PUT Q
#   INT size stride NEWFALSE GET OrderedDict ) R PUT t PUT R PUT
# where size and stride are ( ), INT TUPLE1 PUT, ..., or ( INT ... t PUT ); in a state_dict
# the tensor's name comes first: X"name" PUT. By the rule, with every GET fetching depth 0,
# that pushes the name (0) and one item of depth 2, and fills memo slots, in order, with:
# the name 0, the key 0 (when new), the storage tuple 1, size 1 and stride 1 (when not
# empty), OrderedDict() 1, the argument tuple 2, the tensor 2.
_ANY = rb"[\x00-\xff]"
_GET = rb"(h" + _ANY + rb"|j" + _ANY + rb"{4})"
_PUT = rb"(q" + _ANY + rb"|r" + _ANY + rb"{4})"
_INT = rb"(?:K" + _ANY + rb"|M" + _ANY + rb"{2}|J" + _ANY + rb"{4})"
#: BINUNICODE of an ASCII string of at most 127 bytes: its length needs no decoding, its
#: bytes no UTF-8 check (what torch writes for module and parameter names).
_NAME = rb"X(?:" + rb"|".join(re.escape(bytes([n, 0, 0, 0])) + rb"[\x00-\x7f]{%d}" % n
                              for n in range(128)) + rb")"
_KEY = rb"X(?:" + rb"|".join(bytes([n]) + rb"\x00\x00\x00[0-9]{%d}" % n for n in range(1, 20)) + rb")"
_SHAPE = (rb"(?:\)|(?:" + _INT + rb"\x85|" + _INT + rb"{2}\x86|" + _INT + rb"{3}\x87|\("
          + _INT + rb"*t)" + _PUT + rb")")


@functools.lru_cache(maxsize=None)
def _tensor_record_pattern() -> re.Pattern[bytes]:
    """A tensor record, with or without its name; compiled on first use (~4 ms)."""
    return re.compile(
        rb"(?:" + _NAME + _PUT + rb")?" + _GET + rb"\(\(" + _GET + _GET + rb"(?:" + _KEY + _PUT
        + rb"|" + _GET + rb")" + _GET + _INT + rb"t" + _PUT + rb"Q" + _INT + _SHAPE + _SHAPE
        + rb"[\x88\x89]" + _GET + rb"\)R" + _PUT + rb"t" + _PUT + rb"R" + _PUT
    )


#: Memo depths a tensor record fills, indexed by new key + 2 * (size not empty) + 4 * (stride
#: not empty): the key 0, the storage tuple 1, size 1, stride 1, OrderedDict() 1, the
#: argument tuple 2, the tensor 2.
_TENSOR_RECORD_DEPTHS = tuple(
    bytes([0] * (v & 1) + [1] + [1] * (v >> 1 & 1) + [1] * (v >> 2 & 1) + [1, 2, 2])
    for v in range(8)
)


def _depth0_gets(md: bytearray, good: set[bytes], *gets: bytes) -> bool:
    """Whether each GET opcode (with its argument) fetches a depth-0 entry; remembers those."""
    for get in gets:
        if get and get not in good:  # (b"": an optional GET that is not there)
            idx = get[1] if get[0] == 0x68 else _u32(get, 1)[0]
            if idx >= len(md) or md[idx] != 0:
                return False
            good.add(get)
    return True


# A run of entries {"name": {"version": n}, ...} -- the _metadata torch keeps with every
# state_dict, one entry per module:
#   X"name" PUT } PUT GET "version" INT s   X"name" PUT } PUT GET "version" INT s ...
# By the rule, with the GET fetching depth 0, each entry pushes the name (0) and the dict (1)
# and fills two memo slots: the name 0, the (then empty) dict 1.


@functools.lru_cache(maxsize=None)
def _dict_entry_patterns() -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(a run of entries, one entry capturing its two PUTs); compiled on first use (~5 ms)."""
    name = _NAME
    put = rb"(?:q" + _ANY + rb"|r" + _ANY + rb"{4})"
    get = rb"(?:h" + _ANY + rb"|j" + _ANY + rb"{4})"
    run = re.compile(name + put + rb"\}" + put + rb"(" + get + rb")" + _INT + rb"s(?:"
                     + name + put + rb"\}" + put + rb"\1" + _INT + rb"s)*")
    entry = re.compile(name + rb"(" + put + rb")\}(" + put + rb")" + get + _INT + rb"s")
    return run, entry


def _dict_entries(data: bytes, i: int, md: bytearray, n_puts: int, good: set[bytes],
                  stack: list[int]) -> int:
    """Apply the run of {name: {"version": n}} entries at *i* as a whole: its end; or minus
    its end when it cannot be applied (so that the walker does not try again within it)."""
    run, entry = _dict_entry_patterns()
    m = run.match(data, i)
    if m is None:
        return -i
    first = len(md)  # the PUTs must fill the next free slots, each within the rule
    if first > n_puts or not _depth0_gets(md, good, m.group(1)):  # one GET, in every entry
        return -m.end()
    entries = entry.findall(data, i, m.end())  # the same entries: each parses one way only
    puts = b"".join(itertools.chain.from_iterable(entries))
    if not _sequential_puts(first, puts):
        return -m.end()
    md += b"\x00\x01" * len(entries)
    stack += (0, 1) * len(entries)
    return m.end()


def _put_offset(idx: int) -> int:
    """Where the PUT of *idx* starts in :func:`_expected_puts` ``(0, ...)``."""
    return 2 * idx if idx <= 256 else 5 * idx - 768


def _expected_puts(first: int, stop: int) -> bytes:
    """The PUTs picklers write for indices first .. stop-1: BINPUT below 256, LONG_BINPUT
    from there on."""
    out = bytearray()
    if first < 256:
        n = min(stop, 256) - first
        short = bytearray(2 * n)
        short[0::2] = b"q" * n
        short[1::2] = bytes(range(first, first + n))
        out += short
        first += n
    if first < stop:
        n = stop - first
        indices = array.array("I", range(first, stop))
        if sys.byteorder == "big":
            indices.byteswap()
        raw = indices.tobytes()
        longs = bytearray(5 * n)
        longs[0::5] = b"r" * n
        for k in range(4):  # the little-endian bytes of each index
            longs[1 + k::5] = raw[k::4]
        out += longs
    return bytes(out)


#: The PUTs of indices 0, 1, ... as picklers write them: built as far as walks needed, up to
#: _PUT_RUN_INDICES (640 kB); past that, each check builds its own.
_PUT_RUN_INDICES = 1 << 17
_PUT_RUN = b""
assert array.array("I").itemsize == 4


def _put_run(stop: int) -> bytes:
    """:data:`_PUT_RUN` covering indices up to *stop*; b"" if *stop* is past the cap."""
    global _PUT_RUN
    if stop > _PUT_RUN_INDICES:
        return b""
    if _put_run_covers(_PUT_RUN) < stop:
        _PUT_RUN = _expected_puts(0, min(max(2 * stop, 4096), _PUT_RUN_INDICES))
    return _PUT_RUN


def _put_run_covers(run: bytes) -> int:
    """How many indices *run* (a :data:`_PUT_RUN`, b"" or at least 256 PUTs) has the PUTs of."""
    return (len(run) - 512) // 5 + 256 if run else 0


def _sequential_puts(first: int, puts: bytes) -> bool:
    """Whether *puts* are the PUTs of first, first + 1, ... as picklers write them."""
    stop = first + len(puts) // 2 + 1  # (each PUT takes 2 bytes or more)
    run = _put_run(stop)
    if run:
        return run.startswith(puts, _put_offset(first))
    return _expected_puts(first, stop).startswith(puts)
