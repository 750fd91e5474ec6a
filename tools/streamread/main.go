// streamread: read a stream queue over AMQP 0.9.1 from an offset, as fast as the broker sends it.
//
// It exists so that benchmarks of "consume a stream from `first`" measure the broker rather than the
// client: one channel, basic.qos(prefetch), basic.consume with x-stream-offset, a multiple ack every
// --ack-every deliveries, until --count deliveries arrived. It checks that the x-stream-offset headers are
// consecutive and prints one JSON line:
//
//	{"consumed":n,"seconds":s,"per_s":r,"first_offset":o,"last_offset":o,"bytes":b,"gaps":g,
//	 "missing_headers":m}
//
// seconds runs from consume-ok to the last delivery (0 when --count was not reached); gaps counts the
// deliveries whose offset is not the previous one plus one. On a failure (no delivery for --idle seconds,
// the channel closed by the broker) the line carries "error" too and the exit status is 1; bad usage is 2.
//
// Build: see build.sh (Debian's golang-github-rabbitmq-amqp091-go-dev, GOPATH mode).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type result struct {
	Consumed    int64   `json:"consumed"`
	Seconds     float64 `json:"seconds"`
	PerS        float64 `json:"per_s"`
	FirstOffset *int64  `json:"first_offset"`
	LastOffset  *int64  `json:"last_offset"`
	Bytes       int64   `json:"bytes"`
	Gaps        int64   `json:"gaps"`
	Missing     int64   `json:"missing_headers"`
	Error       string  `json:"error,omitempty"`
}

type options struct {
	uri      string
	queue    string
	offset   string
	count    int64
	prefetch int
	ackEvery int64
	idle     time.Duration
}

func parseOptions() options {
	var o options
	var idle float64
	flag.StringVar(&o.uri, "uri", "amqp://guest:guest@127.0.0.1:5672/", "AMQP URI")
	flag.StringVar(&o.queue, "queue", "", "the stream queue to read (required)")
	flag.StringVar(&o.offset, "offset", "first", `x-stream-offset: "first", "last", "next" or an integer`)
	flag.Int64Var(&o.count, "count", 0, "deliveries to read (required, > 0)")
	flag.IntVar(&o.prefetch, "prefetch", 1000, "basic.qos prefetch count")
	flag.Int64Var(&o.ackEvery, "ack-every", 250, "ack with multiple every N deliveries")
	flag.Float64Var(&idle, "idle", 10, "give up after this many seconds without a delivery")
	flag.Parse()
	if o.queue == "" || o.count <= 0 || o.prefetch < 0 || o.ackEvery <= 0 || idle <= 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "streamread: --queue and --count > 0 are required; --ack-every and --idle > 0")
		flag.Usage()
		os.Exit(2)
	}
	o.idle = time.Duration(idle * float64(time.Second))
	return o
}

// offsetArgument is the x-stream-offset consume argument: a number is sent as a long (field type l).
func offsetArgument(spec string) interface{} {
	if n, err := strconv.ParseInt(spec, 10, 64); err == nil {
		return n
	}
	return spec
}

// headerOffset reads the x-stream-offset header of a delivery, whatever integer type carries it.
func headerOffset(headers amqp.Table) (int64, bool) {
	switch v := headers["x-stream-offset"].(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	}
	return 0, false
}

// read consumes until o.count deliveries arrived; it fills r and returns the failure, if any.
func read(o options, r *result) error {
	conn, err := amqp.DialConfig(o.uri, amqp.Config{Heartbeat: 10 * time.Second, Locale: "en_US",
		Properties: amqp.Table{"connection_name": "streamread", "product": "streamread"}})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	// Buffered: the library drops nothing and never blocks on it when the channel closes.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(o.prefetch, 0, false); err != nil {
		return fmt.Errorf("basic.qos: %w", err)
	}
	const tag = "streamread"
	deliveries, err := ch.Consume(o.queue, tag, false, false, false, false,
		amqp.Table{"x-stream-offset": offsetArgument(o.offset)})
	if err != nil {
		return fmt.Errorf("basic.consume: %w", err)
	}
	began := time.Now()
	last := began
	var prev int64
	defer func() { // what was read so far, on success and failure alike
		r.Seconds = last.Sub(began).Seconds()
		if r.FirstOffset != nil {
			lastOffset := prev
			r.LastOffset = &lastOffset
		}
	}()

	// The idle check runs on a ticker rather than a timer reset per delivery: progress is judged by the
	// count moving between ticks, so the hot loop reads no clock.
	tick := o.idle / 10
	if tick > time.Second {
		tick = time.Second
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	progressAt, progressCount := began, int64(0)

	for r.Consumed < o.count {
		select {
		case d, ok := <-deliveries:
			if !ok {
				if e := <-closed; e != nil {
					return fmt.Errorf("channel closed by the broker after %d deliveries: %v", r.Consumed, e)
				}
				return fmt.Errorf("deliveries ended after %d", r.Consumed)
			}
			r.Consumed++
			r.Bytes += int64(len(d.Body))
			if off, ok := headerOffset(d.Headers); !ok {
				r.Missing++
			} else {
				if r.FirstOffset == nil {
					first := off
					r.FirstOffset = &first
				} else if off != prev+1 {
					r.Gaps++
				}
				prev = off
			}
			if r.Consumed%o.ackEvery == 0 || r.Consumed == o.count {
				if err := ch.Ack(d.DeliveryTag, true); err != nil {
					return fmt.Errorf("basic.ack: %w", err)
				}
			}
			if r.Consumed == o.count {
				last = time.Now()
			}
		case now := <-ticker.C:
			if r.Consumed != progressCount {
				progressAt, progressCount = now, r.Consumed
			} else if now.Sub(progressAt) >= o.idle {
				return fmt.Errorf("no delivery for %.1f s after %d of %d deliveries",
					o.idle.Seconds(), r.Consumed, o.count)
			}
		}
	}
	if err := ch.Cancel(tag, false); err != nil {
		return fmt.Errorf("basic.cancel: %w", err)
	}
	if err := ch.Close(); err != nil {
		return fmt.Errorf("channel.close: %w", err)
	}
	return nil
}

func main() {
	o := parseOptions()
	// The library allocates a few objects per delivery and the live heap stays small (prefetch bounds
	// it): collecting less often cuts this client's CPU by about a quarter. GOGC still overrides it.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	var r result
	err := read(o, &r)
	if r.Seconds > 0 {
		r.PerS = float64(r.Consumed) / r.Seconds
	}
	if err != nil {
		r.Error = err.Error()
	}
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamread:", err)
		os.Exit(1)
	}
}
