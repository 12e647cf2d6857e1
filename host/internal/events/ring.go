package events

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RecentEvent is one entry of GET /v1/events.
type RecentEvent struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Name   string          `json:"name"`
	Source string          `json:"source"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// ring keeps the most recent events in memory, oldest overwritten first.
type ring struct {
	mu      sync.Mutex
	entries []RecentEvent
	next    int // index the next entry goes to
	full    bool
	seq     uint64
}

func newRing(size int) *ring { return &ring{entries: make([]RecentEvent, size)} }

func (r *ring) add(name, source string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.entries[r.next] = RecentEvent{Seq: r.seq, Time: time.Now().UTC(), Name: name, Source: source, Body: body}
	r.next = (r.next + 1) % len(r.entries)
	if r.next == 0 {
		r.full = true
	}
}

// since returns the kept events with Seq > after, oldest first.
func (r *ring) since(after uint64) []RecentEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ordered []RecentEvent
	if r.full {
		ordered = append(ordered, r.entries[r.next:]...)
	}
	ordered = append(ordered, r.entries[:r.next]...)
	out := make([]RecentEvent, 0, len(ordered))
	for _, e := range ordered {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

// Recent returns the kept events with a sequence number above after.
func (b *Bus) Recent(after uint64) []RecentEvent { return b.ring.since(after) }

// Handler serves GET /v1/events: the most recent events, oldest first, with
// ?after=<seq> to poll for newer ones. It says whether Redis is configured
// and how many events wait for it.
func (b *Bus) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var after uint64
		if s := r.URL.Query().Get("after"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				http.Error(w, "after must be an event sequence number", http.StatusBadRequest)
				return
			}
			after = v
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Redis      bool          `json:"redis"`
			QueueDepth int           `json:"queue_depth"`
			Events     []RecentEvent `json:"events"`
		}{b.HasRedis(), b.QueueDepth(), b.Recent(after)})
	})
}
