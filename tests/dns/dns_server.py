"""A small DNS server for tests (standard library only): A/AAAA over UDP, answers switchable
at run time. Each name has an address (or none: NXDOMAIN), a TTL, a delay and a mode
(answer, nxdomain, servfail, drop); a global mode drops every query. Queries are counted
per name (lower case, without the trailing dot)."""
import socket
import struct
import threading
import time


class DnsServer:
    def __init__(self, host="127.0.0.53", port=53):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.lock = threading.Lock()
        self.records = {}  # name -> {"ip": str or None, "ttl": int, "delay": float, "mode": str}
        self.drop_all = False
        self.queries = {}
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def set(self, name, ip=None, ttl=1, delay=0.0, mode="answer"):
        with self.lock:
            self.records[name.rstrip(".").lower()] = {"ip": ip, "ttl": ttl, "delay": delay, "mode": mode}

    def update(self, name, **kw):
        with self.lock:
            self.records[name.rstrip(".").lower()].update(kw)

    def count(self, prefix=""):
        with self.lock:
            return sum(n for q, n in self.queries.items() if q.startswith(prefix))

    def reset_counts(self):
        with self.lock:
            self.queries.clear()

    def close(self):
        self.closed = True
        self.sock.close()

    def _serve(self):
        while not self.closed:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                qid, name, qtype, question = self._parse(data)
            except (ValueError, IndexError, struct.error):
                continue
            with self.lock:
                self.queries[name] = self.queries.get(name, 0) + 1
                rec = dict(self.records.get(name, {"ip": None, "ttl": 1, "delay": 0.0, "mode": "nxdomain"}))
                drop = self.drop_all
            if drop or rec["mode"] == "drop":
                continue
            if rec["delay"] > 0:
                threading.Thread(target=self._answer_later, args=(rec, qid, qtype, question, peer), daemon=True).start()
            else:
                self._send(self._answer(rec, qid, qtype, question), peer)

    def _answer_later(self, rec, qid, qtype, question, peer):
        time.sleep(rec["delay"])  # the server's own behaviour under test, not a synchronisation
        self._send(self._answer(rec, qid, qtype, question), peer)

    def _send(self, packet, peer):
        try:
            self.sock.sendto(packet, peer)
        except OSError:
            pass

    @staticmethod
    def _parse(data):
        qid, _flags, qd = struct.unpack(">HHH", data[:6])
        if qd != 1:
            raise ValueError("one question expected")
        i, labels = 12, []
        while data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii").lower())
            i += 1 + n
        qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
        return qid, ".".join(labels), qtype, data[12:i + 5]

    @staticmethod
    def _answer(rec, qid, qtype, question):
        rcode, answers = 0, b""
        if rec["mode"] == "servfail":
            rcode = 2
        elif rec["mode"] == "nxdomain" or rec["ip"] is None:
            rcode = 3
        elif qtype == 1:  # A; AAAA gets NOERROR without records
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, rec["ttl"], 4) + socket.inet_aton(rec["ip"])
        flags = 0x8180 | rcode
        return struct.pack(">HHHHHH", qid, flags, 1, 1 if answers else 0, 0, 0) + question + answers
