#!/usr/bin/env python3
"""Deterministic generator of the trust update test vectors.

Made from docs/trust-update.md (format and rules) and shared/spec/license-file.md
(key id, keyring) alone, as a second implementation: nothing here was taken from the
agent's code. Run from anywhere:

    python3 tests/trust-vectors/make.py

It removes and rewrites cases/ and chain/ next to this file. Every key comes from a
fixed 32-byte seed (SHA-256 of a label) and every instant is fixed, and Ed25519
signatures are deterministic, so two runs give the same bytes.

The judge() function below is this implementation's reading of the rules; every
case's verdict (the folder name) and `expected` are checked against it before they
are written, and the cases meant to test one rule are written so that judge() would
give another verdict if that rule were missed.
"""

import calendar
import hashlib
import os
import re
import shutil
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

HERE = os.path.dirname(os.path.abspath(__file__))

MAX_SIZE = 16384
MAX_ROOTS = 16
MAX_LICENSE = 64
MAX_SIGNATURES = 32
MAX_VERSION = 4294967295


# ---------------------------------------------------------------- keys


class Key:
    def __init__(self, label):
        self.label = label
        self.seed = hashlib.sha256(b"trust-vectors key " + label.encode()).digest()
        self._init()

    def _init(self):
        self.priv = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.raw = self.priv.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.hex = self.raw.hex()
        self.kid = key_id(self.raw)

    def sign(self, message):
        return self.priv.sign(message)


class SeedKey(Key):
    def __init__(self, label, seed):
        self.label = label
        self.seed = seed
        self._init()


def key_id(raw):
    """license-file.md: uppercase hex of the first 4 bytes of SHA-256 of the raw key."""
    return hashlib.sha256(raw).digest()[:4].hex().upper()


_keys = {}


def K(label):
    if label not in _keys:
        _keys[label] = Key(label)
    return _keys[label]


# Two keys whose key ids are the same: found by trying the seeds
# SHA-256("trust-vectors collision <i>") for i = 0, 1, ... (a 32-bit id collides after
# about 2^16 keys); run `make.py --search-collision` to find them again.
COLLISION = (117324, 155412)


def collision_key(i):
    return SeedKey(
        "collision-%d" % i, hashlib.sha256(b"trust-vectors collision %d" % i).digest()
    )


def search_collision():
    seen = {}
    i = 0
    while True:
        k = collision_key(i)
        if k.kid in seen:
            return seen[k.kid], i
        seen[k.kid] = i
        i += 1


# ---------------------------------------------------------------- instants


def unix(text):
    """YYYY-MM-DDTHH:MM:SSZ to Unix seconds, or None if it is not such an instant."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z", text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups())
    if not 1 <= mo <= 12 or not 1 <= d <= calendar.monthrange(y, mo)[1]:
        return None
    if h > 23 or mi > 59 or s > 59:
        return None
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


NOW_TEXT = "2026-06-01T00:00:00Z"
NOW = unix(NOW_TEXT)  # 1780272000
EXPIRES_TEXT = "2027-01-01T00:00:00Z"
EXPIRES = unix(EXPIRES_TEXT)  # 1798761600


# ---------------------------------------------------------------- documents


def message(version, expires, threshold, roots, licenses):
    """The signed message: `expires` is Unix seconds (int) or None for never."""
    out = "LICENSE-AGENT-TRUST-1\n"
    out += "version %d\n" % version
    out += "expires %s\n" % ("never" if expires is None else "%d" % expires)
    out += "root-threshold %d\n" % threshold
    for raw in sorted(roots):
        out += "root %s\n" % raw.hex()
    for raw in sorted(licenses):
        out += "license %s\n" % raw.hex()
    return out.encode("ascii")


class Doc:
    """A trust document being written: fields, then the text."""

    def __init__(self, version, roots, licenses, threshold=1, expires=EXPIRES_TEXT):
        self.version = version
        self.expires = expires  # text as written: an instant or "never"
        self.threshold = threshold
        self.roots = list(roots)
        self.licenses = list(licenses)

    def msg(self):
        exp = None if self.expires == "never" else unix(self.expires)
        return message(
            self.version,
            exp,
            self.threshold,
            [k.raw for k in self.roots],
            [k.raw for k in self.licenses],
        )

    def sig_line(self, key, msg=None, kid=None):
        sig = key.sign(self.msg() if msg is None else msg)
        return "signature %s %s" % (key.kid if kid is None else kid, sig.hex())

    def lines(self, signers=(), header=True):
        out = []
        if header:
            out.append("license-agent-trust 1")
        out.append("version %d" % self.version)
        out.append("expires %s" % self.expires)
        out.append("root-threshold %d" % self.threshold)
        out += ["root ed25519 %s" % k.hex for k in self.roots]
        out += ["license ed25519 %s" % k.hex for k in self.licenses]
        out += [self.sig_line(k) for k in signers]
        return out

    def text(self, signers=()):
        return text(self.lines(signers))


def text(lines, eol="\n"):
    return "".join(l + eol for l in lines).encode("ascii")


# ---------------------------------------------------------------- keyring


class Trust:
    def __init__(self, version, roots, threshold, licenses, expires=None):
        self.version = version
        self.roots = list(roots)  # raw bytes
        self.threshold = threshold
        self.licenses = list(licenses)
        self.expires = expires  # None: never

    def canonical(self):
        out = "version %d\n" % self.version
        out += "expires %s\n" % ("never" if self.expires is None else "%d" % self.expires)
        out += "root-threshold %d\n" % self.threshold
        for raw in sorted(self.roots):
            out += "root %s\n" % raw.hex()
        for raw in sorted(self.licenses):
            out += "license %s\n" % raw.hex()
        return out.encode("ascii")


def keyring_text(version, roots, threshold, licenses, comment):
    out = ["# %s" % comment]
    if version is not None:
        out.append("version %d" % version)
    if roots:
        out.append("root-threshold %d" % threshold)
    out += ["root ed25519 %s %s" % (k.hex, k.label) for k in roots]
    out += ["ed25519 %s %s" % (k.hex, k.label) for k in licenses]
    return text(out)


HEX64 = re.compile(r"[0-9A-Fa-f]{64}")


def read_keyring(data):
    """The extended firmware keyring: returns a Trust, or raises ValueError."""
    version = None
    threshold = None
    roots, licenses = [], []
    for line in data.decode("ascii").split("\n"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        w = line.split()
        if w[0] == "version" and len(w) == 2 and re.fullmatch(r"0|[1-9]\d*", w[1]):
            if version is not None:
                raise ValueError("version twice")
            version = int(w[1])
        elif w[0] == "root-threshold" and len(w) == 2 and re.fullmatch(r"[1-9]\d*", w[1]):
            if threshold is not None:
                raise ValueError("root-threshold twice")
            threshold = int(w[1])
        elif w[0] == "root" and len(w) >= 3 and w[1] == "ed25519" and HEX64.fullmatch(w[2]):
            raw = bytes.fromhex(w[2])
            if raw not in roots:
                roots.append(raw)
        elif w[0] == "ed25519" and len(w) >= 2 and HEX64.fullmatch(w[1]):
            raw = bytes.fromhex(w[1])
            if raw not in licenses:
                licenses.append(raw)
        else:
            raise ValueError("bad keyring line %r" % line)
    if set(roots) & set(licenses):
        raise ValueError("a key both root and license")
    if roots and (threshold is None or threshold > len(roots)):
        raise ValueError("bad root-threshold")
    return Trust(version or 0, roots, threshold or 0, licenses)


# ---------------------------------------------------------------- the judge


class Verdict(Exception):
    def __init__(self, word, detail=""):
        self.word = word
        self.detail = detail


def parse(data):
    """Size and syntax. Returns (version, expires, threshold, roots, licenses, sigs)."""

    def bad(why):
        raise Verdict("malformed", why)

    if len(data) > MAX_SIZE:
        bad("size %d" % len(data))
    if any(b > 0x7F for b in data):
        bad("a byte over 0x7F")
    lines = []
    for raw in data.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        lines.append(raw.decode("ascii"))
    # The file ends with LF, so the split gives one empty piece after it.
    if lines and lines[-1] == "":
        lines.pop()
    else:
        bad("last line without LF")
    body = []
    for l in lines:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in l):
            bad("a control character")
        if l == "" or l.startswith("#"):
            continue
        body.append(l)
    if not body:
        bad("empty")
    first = re.fullmatch(r"license-agent-trust ([0-9]+)", body[0])
    if not first:
        bad("first line")
    if first.group(1) != "1":
        raise Verdict("unsupported version")
    it = iter(body[1:] + [None])
    line = next(it)

    def take(pattern, what):
        nonlocal line
        if line is None:
            bad("missing %s" % what)
        m = re.fullmatch(pattern, line)
        if not m:
            bad("expected %s: %r" % (what, line))
        line = next(it)
        return m

    m = take(r"version (0|[1-9][0-9]*)", "version")
    version = int(m.group(1))
    if not 1 <= version <= MAX_VERSION:
        bad("version out of range")
    m = take(r"expires (never|\S+)", "expires")
    if m.group(1) == "never":
        expires = None
    else:
        expires = unix(m.group(1))
        if expires is None:
            bad("expires")
    m = take(r"root-threshold ([0-9]+)", "root-threshold")
    threshold = int(m.group(1))
    roots, licenses, sigs = [], [], []
    while line is not None and line.startswith("root "):
        roots.append(bytes.fromhex(take(r"root ed25519 ([0-9A-Fa-f]{64})", "root").group(1)))
    while line is not None and line.startswith("license "):
        licenses.append(
            bytes.fromhex(take(r"license ed25519 ([0-9A-Fa-f]{64})", "license").group(1))
        )
    while line is not None:
        m = take(r"signature ([0-9A-Fa-f]{8}) ([0-9A-Fa-f]{128})", "signature")
        sigs.append((m.group(1).upper(), bytes.fromhex(m.group(2))))
    if not 1 <= len(roots) <= MAX_ROOTS:
        bad("%d roots" % len(roots))
    if not 1 <= len(licenses) <= MAX_LICENSE:
        bad("%d license keys" % len(licenses))
    if len(sigs) > MAX_SIGNATURES:
        bad("%d signatures" % len(sigs))
    if not 1 <= threshold <= len(roots):
        bad("root-threshold %d" % threshold)
    keys = roots + licenses
    if len(set(keys)) != len(keys):
        bad("a key twice")
    if len(set(key_id(k) for k in keys)) != len(keys):
        bad("two keys with one key id")
    if len(set(kid for kid, _ in sigs)) != len(sigs):
        bad("two signature lines with one key id")
    return version, expires, threshold, roots, licenses, sigs


def count(keys, sigs, msg):
    by_id = {key_id(k): k for k in keys}
    n = 0
    for kid, sig in sigs:
        k = by_id.get(kid)
        if k is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(k).verify(sig, msg)
            n += 1
        except InvalidSignature:
            pass
    return n


def judge(held, data, now):
    """Returns ("taken", Trust) or (verdict word, detail)."""
    try:
        if not held.roots:
            # Questions for the spec, Q5: checked first here, before the document.
            raise Verdict("no root key")
        version, expires, threshold, roots, licenses, sigs = parse(data)
        if version <= held.version:
            raise Verdict("not newer")
        if version > held.version + 1:
            raise Verdict("skips a version")
        msg = message(version, expires, threshold, roots, licenses)
        k = count(held.roots, sigs, msg)
        if k < held.threshold:
            raise Verdict("below the old threshold", "%d of %d" % (k, held.threshold))
        k = count(roots, sigs, msg)
        if k < threshold:
            raise Verdict("below its own threshold", "%d of %d" % (k, threshold))
        if expires is not None and expires <= now:
            raise Verdict("expired")
        return "taken", Trust(version, roots, threshold, licenses, expires)
    except Verdict as v:
        return v.word, v.detail


# ---------------------------------------------------------------- writing cases

CASES = []


def case(verdict, slug, held, doc_bytes, why, now=NOW):
    """held: (version or None, roots, threshold, licenses)."""
    CASES.append((verdict, slug, held, doc_bytes, why, now))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def emit_cases(root):
    counts = {}
    index = []
    names = set()
    for verdict, slug, held, doc_bytes, why, now in CASES:
        name = "%s-%s" % (verdict.replace(" ", "-"), slug)
        assert name not in names, name
        names.add(name)
        hv, hroots, ht, hlic = held
        ring = keyring_text(hv, hroots, ht, hlic, "held trust for the case %s" % name)
        trust = read_keyring(ring)
        got, res = judge(trust, doc_bytes, now)
        if got != verdict:
            sys.exit("%s: judged %r (%s)" % (name, got, res if got != "taken" else ""))
        d = os.path.join(root, name)
        os.makedirs(d)
        write(os.path.join(d, "held.keyring"), ring)
        write(os.path.join(d, "update.cfg"), doc_bytes)
        write(os.path.join(d, "now"), b"%d\n" % now)
        if verdict == "taken":
            write(os.path.join(d, "expected"), res.canonical())
            detail = ""
        else:
            detail = res
        counts[verdict] = counts.get(verdict, 0) + 1
        index.append((name, why + (" (%s)" % detail if detail and verdict.startswith("below") else "")))
    return counts, index


# ---------------------------------------------------------------- the cases


def build():
    A, B, C, D, E, F = (K("root-" + x) for x in "abcdef")
    L1, L2, L3, L4 = (K("license-%d" % i) for i in range(1, 5))
    X = K("stranger")  # a key no trust names

    def padded(lines, size):
        """The lines with a comment line added after the first so the file is `size` bytes."""
        base = len(text(lines))
        fill = size - base - 3  # "# " and LF
        assert fill >= 0
        return text(lines[:1] + ["# " + "x" * fill] + lines[1:])

    # ------------------------------------------------ taken
    d = Doc(1, [A], [L2])
    case("taken", "license-key-rotation", (None, [A], 1, [L1]), d.text([A]),
         "license key L1 replaced by L2, signed by the one root; the keyring has no `version` line (0)")

    d = Doc(6, [D, E, F], [L1], threshold=2)
    case("taken", "root-rotation", (5, [A, B, C], 2, [L1]), d.text([A, C, D, F]),
         "roots A B C (2 of 3) replaced by D E F (2 of 3), signed by A C (old) and D F (new)")

    d = Doc(1, [A, C], [L1], threshold=2)
    case("taken", "kept-root-counts-for-both", (0, [A, B], 2, [L1]), d.text([A, B, C]),
         "roots A B (2) to A C (2): A is kept and signs once, counting for both; B and C sign too")

    d = Doc(1, [A, C], [L1], threshold=1)
    case("taken", "kept-root-signs-alone", (0, [A, B], 1, [L1]), d.text([A]),
         "roots A B (1) to A C (1), signed by A alone, which counts for both")

    # Two files, one document.
    same_held = (3, [A, B], 2, [L1])
    d = Doc(4, [A, C], [L2, L3], threshold=2)
    case("taken", "same-document-plain", same_held, d.text([A, B, C]),
         "the document of `taken-same-document-variant`, written plainly")
    lines = [
        "# trust version 4, written by hand",
        "",
        "license-agent-trust 1",
        "version 4",
        "# a comment between lines",
        "expires %s" % EXPIRES_TEXT,
        "root-threshold 2",
        "root ed25519 %s" % C.hex.upper(),
        "",
        "root ed25519 %s" % A.hex,
        "license ed25519 %s" % L3.hex[:32].upper() + L3.hex[32:],
        "license ed25519 %s" % L2.hex.upper(),
        "# the signatures, in another order, some in upper case",
        d.sig_line(C).upper().replace("SIGNATURE", "signature"),
        d.sig_line(B, kid=B.kid.lower()),
        d.sig_line(A),
        "",
    ]
    case("taken", "same-document-variant", same_held, text(lines, "\r\n"),
         "the document of `taken-same-document-plain`: CRLF, comments, blank lines, key lines "
         "in another order, upper-case hex, a lower-case key id, signatures in another order")

    d = Doc(1, [A], [L1, L2], expires="never")
    case("taken", "expires-never", (0, [A], 1, [L1]), d.text([A]),
         "expires never: the expected trust says `expires never`")

    d = Doc(1, [A], [L1], expires="2026-06-01T00:00:01Z")
    case("taken", "expires-one-second-after-now", (0, [A], 1, [L1]), d.text([A]),
         "expires one second after the judged instant")

    d = Doc(1, [A], [L2])
    case("taken", "crlf", (0, [A], 1, [L1]), text(d.lines([A]), "\r\n"),
         "every line ended by CR LF")

    d = Doc(1, [A], [L2])
    case("taken", "size-16384", (0, [A], 1, [L1]), padded(d.lines([A]), MAX_SIZE),
         "exactly 16,384 bytes (a long comment)")

    roots16 = [K("many-root-%02d" % i) for i in range(16)]
    lic64 = [K("many-license-%02d" % i) for i in range(64)]
    d = Doc(1, roots16, lic64, threshold=16)
    signers = roots16 + [K("bystander-%02d" % i) for i in range(15)] + [A]
    case("taken", "at-every-limit", (0, [A], 1, [L1]), d.text(signers),
         "16 roots with threshold 16, 64 license keys, 32 signature lines "
         "(the 16 new roots, the old root A, 15 keys no trust names)")

    d = Doc(1, [A], [L2])
    case("taken", "signature-from-a-stranger", (0, [A], 1, [L1]), d.text([X, A]),
         "an extra valid signature by a key in neither trust: not counted, not an error (Questions for the spec, Q15)")

    d = Doc(1, [A, B], [L1], threshold=1)
    lines = d.lines([B])
    lines.insert(-1, "signature %s %s" % (A.kid, A.sign(b"another message").hex()))
    case("taken", "bad-signature-but-enough", (0, [A, B], 1, [L1]), text(lines),
         "root A's signature does not verify, root B's does and the thresholds are 1 "
         "(Questions for the spec, Q12)")

    d = Doc(MAX_VERSION, [A], [L1])
    case("taken", "version-4294967295", (MAX_VERSION - 1, [A], 1, [L1]), d.text([A]),
         "the highest version, after 4294967294 (Questions for the spec, Q8)")

    d = Doc(1, [B], [A], threshold=1)
    case("taken", "old-root-becomes-license-key", (0, [A], 1, [L1]), d.text([A, B]),
         "the held root A is a license key of the new document (Questions for the spec, Q13)")

    # ------------------------------------------------ unsupported version
    d = Doc(1, [A], [L2])
    lines = d.lines([A])
    lines[0] = "license-agent-trust 2"
    case("unsupported version", "2", (0, [A], 1, [L1]), text(lines),
         "`license-agent-trust 2`, then a version 1 body")
    case("unsupported version", "2-with-unknown-body", (0, [A], 1, [L1]),
         text(["# a later format", "license-agent-trust 2", "anything at all", "version one"]),
         "`license-agent-trust 2` after a comment, then lines version 1 does not know "
         "(Questions for the spec, Q6)")

    # ------------------------------------------------ not newer / skips
    d = Doc(3, [A], [L2])
    case("not newer", "same-version", (3, [A], 1, [L1]), d.text([A]),
         "version 3 again over version 3, properly signed")
    d = Doc(2, [A], [L2])
    case("not newer", "goes-back", (3, [A], 1, [L1]), d.text([A]),
         "version 2 over version 3, properly signed")
    d = Doc(2, [A], [L2])
    case("not newer", "goes-back-unsigned", (3, [A], 1, [L1]), d.text([]),
         "version 2 over version 3 with no signature: the version is judged first")
    d = Doc(5, [A], [L2])
    case("skips a version", "by-one", (3, [A], 1, [L1]), d.text([A]),
         "version 5 over version 3, properly signed")
    d = Doc(5, [A], [L2], expires="2020-01-01T00:00:00Z")
    case("skips a version", "unsigned-and-expired", (3, [A], 1, [L1]), d.text([]),
         "version 5 over version 3, unsigned and expired: the version is judged first")

    # ------------------------------------------------ below the old threshold
    d = Doc(1, [A, B, C], [L1], threshold=2)
    case("below the old threshold", "one-of-two", (0, [A, B, C], 2, [L1]), d.text([A]),
         "held roots A B C with threshold 2, signed by A only")
    d = Doc(1, [A, B], [L1], threshold=1)
    case("below the old threshold", "same-key-once-threshold-2", (0, [A, B], 2, [L1]),
         d.text([A]), "held threshold 2, one signature line by A")
    d = Doc(1, [D, E], [L1], threshold=2)
    case("below the old threshold", "new-roots-only", (0, [A, B], 2, [L1]), d.text([D, E]),
         "roots A B (2) to D E (2), signed by D and E only")
    d = Doc(1, [A, B], [L1], threshold=2)
    lines = d.lines([A])
    lines.append("signature %s %s" % (B.kid, B.sign(d.msg() + b"\n").hex()))
    case("below the old threshold", "bad-signature-from-a-root", (0, [A, B], 2, [L1]),
         text(lines), "held threshold 2: A signs; B's line names B but its signature "
         "does not verify (made over the message with a trailing LF)")
    d = Doc(1, [A], [L2])
    case("below the old threshold", "signed-by-license-key", (0, [A], 1, [L1]), d.text([L1]),
         "signed by the held license key L1, not a root")
    d = Doc(1, [A], [L2])
    case("below the old threshold", "unsigned", (0, [A], 1, [L1]), d.text([]),
         "no signature line at all")
    d = Doc(1, [A], [L2])
    case("below the old threshold", "signature-under-wrong-key-id", (0, [A, B], 1, [L1]),
         text(d.lines() + [d.sig_line(A, kid=B.kid)]),
         "A's valid signature on a line naming B's key id")
    # Message mistakes: each signature made over a message built wrongly.
    lic = [L2, L1] if L2.raw > L1.raw else [L1, L2]  # descending order, not sorted
    d = Doc(1, [A], lic)
    wrong = (
        "LICENSE-AGENT-TRUST-1\nversion 1\nexpires %d\nroot-threshold 1\nroot %s\n" % (EXPIRES, A.hex)
        + "".join("license %s\n" % k.hex for k in lic)
    ).encode()
    case("below the old threshold", "message-keys-not-sorted", (0, [A], 1, [L1]),
         text(d.lines() + [d.sig_line(A, msg=wrong)]),
         "signed over the message with the license keys in the file's order, not sorted")
    d = Doc(1, [A], [L2])
    wrong = ("LICENSE-AGENT-TRUST-1\nversion 1\nexpires %s\nroot-threshold 1\nroot %s\nlicense %s\n"
             % (EXPIRES_TEXT, A.hex, L2.hex)).encode()
    case("below the old threshold", "message-expires-as-text", (0, [A], 1, [L1]),
         text(d.lines() + [d.sig_line(A, msg=wrong)]),
         "signed over a message with `expires` as written, not as Unix seconds")
    d = Doc(1, [A], [L2])
    case("below the old threshold", "message-is-the-file", (0, [A], 1, [L1]),
         text(d.lines() + [d.sig_line(A, msg=text(d.lines()))]),
         "signed over the file's text instead of the signed message")
    d = Doc(1, [A], [L2], expires="2020-01-01T00:00:00Z")
    case("below the old threshold", "and-expired", (0, [A, B], 2, [L1]), d.text([A]),
         "held threshold 2, signed by A only, and expired: the signatures are judged first")

    # ------------------------------------------------ below its own threshold
    d = Doc(1, [D, E, F], [L1], threshold=2)
    case("below its own threshold", "old-roots-only", (0, [A, B], 2, [L1]), d.text([A, B]),
         "roots A B (2) to D E F (2), signed by A and B only")
    d = Doc(1, [D, E, F], [L1], threshold=2)
    case("below its own threshold", "one-new-root", (0, [A], 1, [L1]), d.text([A, E]),
         "roots A (1) to D E F (2), signed by A and E")
    d = Doc(1, [A, D], [L1], threshold=2)
    lines = d.lines([A])
    lines.append("signature %s %s" % (D.kid, D.sign(Doc(2, [A, D], [L1], 2).msg()).hex()))
    case("below its own threshold", "bad-signature-from-a-new-root", (0, [A], 1, [L1]),
         text(lines), "roots A (1) to A D (2): A signs; D's signature is over version 2's message")
    d = Doc(1, [A], [L2], expires="2020-01-01T00:00:00Z")
    case("below its own threshold", "and-expired", (0, [B], 1, [L1]), d.text([B]),
         "roots B to A, signed by B only, and expired: the signatures are judged first")

    # ------------------------------------------------ expired
    d = Doc(1, [A], [L2], expires="2026-01-01T00:00:00Z")
    case("expired", "in-the-past", (0, [A], 1, [L1]), d.text([A]),
         "expired 2026-01-01, judged 2026-06-01, properly signed")
    d = Doc(1, [A], [L2], expires=NOW_TEXT)
    case("expired", "at-the-judged-instant", (0, [A], 1, [L1]), d.text([A]),
         "expires exactly at the judged instant (it must be later)")

    # ------------------------------------------------ no root key
    d = Doc(1, [A], [L2])
    case("no root key", "license-keys-only", (0, [], 0, [L1]), d.text([A, L1]),
         "the held keyring names license key L1 and no root; the document is signed by its "
         "own root and by L1")
    case("no root key", "no-version-line", (None, [], 0, [L1, L2]), Doc(1, [A], [L2]).text([A]),
         "the held keyring is two license key lines only")

    # ------------------------------------------------ malformed
    held = (0, [A], 1, [L1])

    def mal(slug, data, why, h=held):
        case("malformed", slug, h, data, why)

    d = Doc(1, [A], [L2])
    good = d.lines([A])  # taken against `held` as it is
    assert judge(read_keyring(keyring_text(0, [A], 1, [L1], "")), text(good), NOW)[0] == "taken"

    def edit(i, new):
        out = list(good)
        out[i] = new
        return text(out)

    mal("size-16385", padded(good, MAX_SIZE + 1), "16,385 bytes, otherwise taken")
    big = list(good)
    big[0] = "license-agent-trust 2"
    mal("size-16385-unsupported-version", padded(big, MAX_SIZE + 1),
        "16,385 bytes starting `license-agent-trust 2`: size first")
    mal("lone-cr", text(good[:2]) + ("%s\r%s\n" % (good[2], good[3])).encode() + text(good[4:]),
        "a CR not followed by LF between the `expires` and `root-threshold` lines")
    mal("cr-cr-lf", edit(1, good[1] + "\r\r"),
        "the `version` line ends CR CR LF: one CR is taken off, the other stays")
    mal("tab", edit(1, "version\t1"), "a tab between `version` and 1")
    mal("tab-at-end", edit(1, "version 1\t"), "a tab at the end of the `version` line")
    mal("trailing-space", edit(1, "version 1 "), "a space at the end of the `version` line")
    mal("two-spaces", edit(3, "root-threshold  1"), "two spaces in the `root-threshold` line")
    mal("leading-space", edit(4, " " + good[4]), "a space before `root`")
    out = text(good[:5]) + good[5].encode() + b" caf\xe9\n" + text(good[6:])
    mal("byte-over-7f", out, "free text with the byte 0xE9 after the license key")
    out = text(good[:1]) + b"# caf\xe9\n" + text(good[1:])
    mal("byte-over-7f-in-comment", out,
        "the byte 0xE9 in a comment line (the file is ASCII) (Questions for the spec, Q4)")
    mal("control-character", edit(1, "version 1\x0b"), "a vertical tab (0x0B) after the version")
    mal("empty", b"", "an empty file")
    mal("comments-only", text(["# nothing", ""]), "comments and a blank line only")
    mal("no-header", text(good[1:]), "no `license-agent-trust` line")
    mal("header-not-first", text(good[1:2] + good[:1] + good[2:]),
        "`version` before `license-agent-trust 1`")
    mal("missing-expires", text(good[:2] + good[3:]), "no `expires` line")
    mal("missing-root-threshold", text(good[:3] + good[4:]), "no `root-threshold` line")
    mal("no-root", text(Doc(1, [A], [L2]).lines()[:4] + good[5:]), "no `root` line")
    mal("no-license-key", text(good[:5] + good[6:]), "no `license` line")
    mal("expires-before-version", text(good[:1] + [good[2], good[1]] + good[3:]),
        "`expires` before `version`")
    mal("license-before-root", text(good[:4] + [good[5], good[4]] + good[6:]),
        "the `license` line before the `root` line")
    mal("signature-before-license", text(good[:5] + [good[6], good[5]]),
        "the signature line before the `license` line")
    d2 = Doc(1, [A, B], [L2, L3])
    l2 = d2.lines([A])
    mal("root-between-licenses", text(l2[:5] + [l2[6], l2[5], l2[7]] + l2[8:]),
        "roots A B, license keys L2 L3, written root, license, root, license")
    mal("unknown-word", text(good[:6] + ["comment this is not a comment"] + good[6:]),
        "an unknown line before the signature")
    mal("header-uppercase", edit(0, "LICENSE-AGENT-TRUST 1"), "the first line in upper case")
    mal("version-twice", text(good[:2] + good[1:]), "the `version` line twice")
    mal("version-0", edit(1, "version 0"), "version 0")
    mal("version-leading-zero", edit(1, "version 01"), "version 01 over version 0")
    mal("version-4294967296", edit(1, "version 4294967296"), "version 4294967296")
    mal("version-negative", edit(1, "version -1"), "version -1")
    mal("version-plus", edit(1, "version +1"), "version +1")
    mal("expires-offset-not-z", edit(2, "expires 2027-01-01T00:00:00+00:00"),
        "expires with +00:00 instead of Z")
    mal("expires-no-z", edit(2, "expires 2027-01-01T00:00:00"), "expires without Z")
    mal("expires-fraction", edit(2, "expires 2027-01-01T00:00:00.000Z"),
        "expires with fractional seconds")
    mal("expires-lowercase-t-z", edit(2, "expires 2027-01-01t00:00:00z"),
        "expires with a lower-case t and z (Questions for the spec, Q10)")
    mal("expires-space", edit(2, "expires 2027-01-01 00:00:00Z"), "expires with a space for T")
    mal("expires-february-30", edit(2, "expires 2027-02-30T00:00:00Z"), "expires on February 30")
    mal("expires-unix-seconds", edit(2, "expires %d" % EXPIRES), "expires as Unix seconds")
    mal("expires-Never", edit(2, "expires Never"), "expires `Never`")
    mal("root-threshold-0", edit(3, "root-threshold 0"), "threshold 0")
    d2 = Doc(1, [A, B], [L2], threshold=3)
    mal("root-threshold-above-roots", d2.text([A, B]), "threshold 3 with two roots, both signing")
    d2 = Doc(1, [A, A], [L2])
    mal("duplicate-root", d2.text([A]), "root A twice")
    l2 = Doc(1, [A], [L2, L2]).lines([A])
    l2[6] = "license ed25519 " + L2.hex.upper()
    mal("duplicate-license-key-other-case", text(l2),
        "license key L2 twice, once in upper case")
    mal("root-also-license-key", Doc(1, [A], [L2, A]).text([A]),
        "root A is also a license key")
    P, Q = collision_key(COLLISION[0]), collision_key(COLLISION[1])
    assert P.kid == Q.kid and P.raw != Q.raw
    mal("two-keys-one-key-id", Doc(1, [A], [P, Q]).text([A]),
        "license keys P and Q differ but have the same key id %s (seeds SHA-256 of "
        "`trust-vectors collision 117324` and `... 155412`)" % P.kid)
    mal("17-roots", Doc(1, [K("many-root-%02d" % i) for i in range(16)] + [A], [L2]).text([A]),
        "17 root lines, threshold 1, signed by A")
    mal("65-license-keys", Doc(1, [A], [K("many-license-%02d" % i) for i in range(65)]).text([A]),
        "65 license lines")
    mal("33-signatures", d.text([A] + [K("bystander-%02d" % i) for i in range(32)]),
        "33 signature lines, each valid and by a different key")
    mal("same-signer-twice", text(good + [good[6]]),
        "the one root's signature line twice (one key id on two lines)")
    other = "signature %s %s" % (A.kid.lower(), A.sign(b"x").hex())
    mal("same-key-id-other-case", text(good + [other]),
        "two signature lines for A, the second with the key id in lower case (Questions for the spec, Q11)")
    mal("signature-short", edit(6, good[6][:-2]), "a signature of 126 hex digits")
    mal("key-id-short", edit(6, "signature %s %s" % (A.kid[:7], good[6].split()[2])),
        "a key id of 7 hex digits")
    mal("root-key-short", edit(4, good[4][:-2]), "a root key of 62 hex digits")
    mal("root-not-ed25519", edit(4, good[4].replace("ed25519", "ed448")), "`root ed448 ...`")
    mal("root-free-text", edit(4, good[4] + " root-a"),
        "free text after a root key (allowed in the keyring, not here) (Questions for the spec, Q17)")
    mal("no-final-lf", text(good)[:-1],
        "the last line not ended by LF (Questions for the spec, Q1)")


# ---------------------------------------------------------------- the chain


def build_chain(root):
    A, B, C, D, E = (K("chain-root-" + x) for x in "abcde")
    L1, L2, L3 = (K("chain-license-%d" % i) for i in range(1, 4))
    ring = text([
        "# the firmware keyring at the start of the chain",
        "version 0",
        "root-threshold 2",
        "root ed25519 %s chain-root-a" % A.hex,
        "root ed25519 %s chain-root-b" % B.hex,
        "root ed25519 %s chain-root-c" % C.hex,
        "ed25519 %s chain-license-1" % L1.hex,
    ])
    docs = [
        # 1: a license key rotation: L1 out, L2 in.
        (Doc(1, [A, B, C], [L2], threshold=2), [A, B]),
        # 2: a root rotation: C out, D and E in; 3 of 4.
        (Doc(2, [A, B, D, E], [L2], threshold=3), [B, C, D, E]),
        # 3: a threshold change: 2 of the same 4.
        (Doc(3, [A, B, D, E], [L2, L3], threshold=2, expires="never"), [A, D, E]),
        # 4: a key removal: license key L2 removed (leaked), root A removed.
        (Doc(4, [B, D, E], [L3], threshold=2), [D, E]),
    ]
    os.makedirs(root)
    write(os.path.join(root, "firmware.keyring"), ring)
    write(os.path.join(root, "now"), b"%d\n" % NOW)
    trust = read_keyring(ring)
    for i, (d, signers) in enumerate(docs, 1):
        data = d.text(signers)
        got, res = judge(trust, data, NOW)
        assert got == "taken", (i, got, res)
        trust = res
        write(os.path.join(root, "trust-%d.cfg" % i), data)
    write(os.path.join(root, "expected"), trust.canonical())


# ---------------------------------------------------------------- main


def main():
    if sys.argv[1:] == ["--search-collision"]:
        print(search_collision())
        return
    cases = os.path.join(HERE, "cases")
    chain = os.path.join(HERE, "chain")
    for p in (cases, chain):
        if os.path.exists(p):
            shutil.rmtree(p)
    build()
    os.makedirs(cases)
    counts, index = emit_cases(cases)
    build_chain(chain)
    write(os.path.join(HERE, "cases.txt"),
          "".join("%s\t%s\n" % (n, w) for n, w in sorted(index)).encode())
    for v in sorted(counts):
        print("%-26s %d" % (v, counts[v]))
    print("%-26s %d" % ("total", sum(counts.values())))


if __name__ == "__main__":
    main()
