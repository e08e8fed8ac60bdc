package consumer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaReadOptions say what ReadKafka reads: every partition of Topics,
// from the start (or from Start) up to the high watermarks the partitions
// had when the read began.
type KafkaReadOptions struct {
	// Client reaches the brokers: kgo.SeedBrokers and, where the cluster
	// needs them, kgo.DialTLSConfig and kgo.SASL (required). ReadKafka
	// adds its own consume options.
	Client []kgo.Opt
	// Topics to read, every partition of each (required).
	Topics []string
	// Start, when set, starts each partition it names at that offset (the
	// Next of an earlier read, to read only the tail); the others start
	// at their log start.
	Start map[string]map[int32]int64
	// Cluster, when set, skips the events of other clusters (their
	// cluster attribute): a topic may carry the feeds of several.
	Cluster string
	// SkipMissing reads a topic that does not exist as empty (listed in
	// KafkaReadResult.Missing) instead of failing with ErrTopicNotFound.
	SkipMissing bool
	// FetchWait is how long a poll waits for records (default 5s). When
	// nothing came by then, the partitions not read to their end are
	// checked: records removed since the read began (retention, delete)
	// end it there.
	FetchWait time.Duration
	// OnError is called for a record that cannot be decoded or applied.
	// Returning nil skips it and goes on; nil OnError stops the read with
	// the error.
	OnError func(r *kgo.Record, err error) error
}

// KafkaReadResult describes what a read covered.
type KafkaReadResult struct {
	// Partitions read, by topic and partition.
	Partitions []PartitionRead `json:"partitions"`
	// Missing are the topics that did not exist (SkipMissing).
	Missing []string `json:"missing,omitempty"`
	// Records counts the records read, tombstones included.
	Records int `json:"records"`
	// OtherClusters counts the events skipped as another cluster's.
	OtherClusters int `json:"otherClusters,omitempty"`
	// Tombstones counts the null-value records (tombstones: true writes
	// one after each deletion); they change no object.
	Tombstones int `json:"tombstones,omitempty"`
	// FirstTime is the earliest timestamp of a record read.
	FirstTime time.Time `json:"firstTime"`
}

// PartitionRead is what a read covered of one partition.
type PartitionRead struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// LogStart is the partition's first offset when the read began:
	// above 0, older records were removed (retention, delete records).
	// After Merge, the tail read's when records past this read's end
	// were removed before the tail read them.
	LogStart int64 `json:"logStart"`
	// From is where the read began, End the high watermark then: the
	// read stopped before it.
	From int64 `json:"from"`
	End  int64 `json:"end"`
	// Last is the offset of the last record read (-1: none).
	Last    int64 `json:"last"`
	Records int   `json:"records"`
}

// Forgot reports whether a partition read had lost records before the
// read began (its log started above offset 0).
func (r KafkaReadResult) Forgot() bool {
	for _, p := range r.Partitions {
		if p.LogStart > 0 {
			return true
		}
	}
	return false
}

// Next is where a later read of the tail starts: each partition at the
// end of this read.
func (r KafkaReadResult) Next() map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for _, p := range r.Partitions {
		if out[p.Topic] == nil {
			out[p.Topic] = map[int32]int64{}
		}
		out[p.Topic][p.Partition] = max(p.End, p.From)
	}
	return out
}

// Merge adds a later read of the tail (started at r.Next()) to r.
func (r *KafkaReadResult) Merge(tail KafkaReadResult) {
	at := map[string]map[int32]*PartitionRead{}
	for i := range r.Partitions {
		p := &r.Partitions[i]
		if at[p.Topic] == nil {
			at[p.Topic] = map[int32]*PartitionRead{}
		}
		at[p.Topic][p.Partition] = p
	}
	for _, t := range tail.Partitions {
		p := at[t.Topic][t.Partition]
		if p == nil {
			r.Partitions = append(r.Partitions, t)
			continue
		}
		if t.From > p.End {
			// Records after this read's end were removed before the
			// tail read them.
			p.LogStart = max(p.LogStart, t.LogStart)
		}
		p.End = max(p.End, t.End)
		if t.Records > 0 {
			p.Last = t.Last
		}
		p.Records += t.Records
	}
	sortPartitions(r.Partitions)
	r.Records += tail.Records
	r.Tombstones += tail.Tombstones
	r.OtherClusters += tail.OtherClusters
	// What the tail found missing is what still is: a topic created
	// since (a template's) was read.
	r.Missing = tail.Missing
	if r.FirstTime.IsZero() || (!tail.FirstTime.IsZero() && tail.FirstTime.Before(r.FirstTime)) {
		r.FirstTime = tail.FirstTime
	}
}

// ErrTopicNotFound is returned when a topic does not exist (unless
// SkipMissing).
var ErrTopicNotFound = errors.New("topic not found")

// ReadKafka applies the records of every partition of the topics to s,
// each partition in offset order (partitions interleave; kubefeed keys
// records by uid, so one object's events share a partition). It stops at
// the high watermarks the partitions had when it began, so it terminates
// while kubefeed goes on producing. Both CloudEvents modes of the Kafka
// binding are understood, as the Kafka sink writes them: structured (the
// event is the value) and binary (ce_* headers, data as the value). Null
// values (tombstones) are counted and skipped. ctx bounds the whole read.
func ReadKafka(ctx context.Context, s *State, o KafkaReadOptions) (KafkaReadResult, error) {
	var res KafkaReadResult
	if len(o.Client) == 0 {
		return res, errors.New("read kafka: no client options (kgo.SeedBrokers)")
	}
	if len(o.Topics) == 0 {
		return res, errors.New("read kafka: no topic")
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 5 * time.Second
	}
	admin, err := kgo.NewClient(o.Client...)
	if err != nil {
		return res, fmt.Errorf("kafka client: %w", err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	parts, missing, err := listPartitions(ctx, adm, o)
	if err != nil {
		return res, err
	}
	res.Missing = missing
	pending := map[string]map[int32]*PartitionRead{}
	start := map[string]map[int32]kgo.Offset{}
	for i := range parts {
		p := &parts[i]
		if p.From >= p.End {
			continue
		}
		if pending[p.Topic] == nil {
			pending[p.Topic], start[p.Topic] = map[int32]*PartitionRead{}, map[int32]kgo.Offset{}
		}
		pending[p.Topic][p.Partition] = p
		start[p.Topic][p.Partition] = kgo.NewOffset().At(p.From)
	}
	res.Partitions = parts
	if len(pending) == 0 {
		return res, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), o.Client...),
		kgo.ConsumePartitions(start),
		// Records removed while the read runs: go on from what is left.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Every offset is seen, so that a partition whose last offsets
		// are transaction markers is known to be read to its end.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return res, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	left := len(parts)
	for _, p := range parts {
		if p.From >= p.End {
			left--
		}
	}
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("read stopped with %d partitions not read to their end (%s): %w", left, unfinished(pending), err)
		}
		pctx, cancel := context.WithTimeout(ctx, o.FetchWait)
		fs := cl.PollFetches(pctx)
		cancel()
		got := 0
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return res, ferr
		}
		var aerr error
		fs.EachRecord(func(r *kgo.Record) {
			p := pending[r.Topic][r.Partition]
			if aerr != nil || p == nil {
				return
			}
			got++
			if r.Offset >= p.End-1 {
				// The last offset of the read, or past it (the ones
				// before were removed).
				delete(pending[r.Topic], r.Partition)
				left--
				if r.Offset >= p.End {
					return
				}
			}
			p.Last = r.Offset
			if r.Attrs.IsControl() {
				return
			}
			p.Records++
			res.Records++
			if res.FirstTime.IsZero() || r.Timestamp.Before(res.FirstTime) {
				res.FirstTime = r.Timestamp
			}
			if r.Value == nil {
				res.Tombstones++
				return
			}
			e, err := decodeRecord(r)
			if err == nil && o.Cluster != "" && e.Cluster != o.Cluster {
				res.OtherClusters++
				return
			}
			if err == nil {
				err = s.Apply(e)
			}
			if err != nil {
				err = fmt.Errorf("topic %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
				if o.OnError == nil {
					aerr = err
					return
				}
				aerr = o.OnError(r, err)
			}
		})
		if aerr != nil {
			return res, aerr
		}
		if got > 0 || left == 0 {
			continue
		}
		// Nothing came: the records up to the end may have been removed
		// since the read began.
		starts, err := adm.ListStartOffsets(ctx, topicsOf(pending)...)
		if err != nil {
			return res, fmt.Errorf("start offsets: %w", err)
		}
		for t, ps := range pending {
			for n, p := range ps {
				if lo, ok := starts.Lookup(t, n); ok && lo.Err == nil && lo.Offset >= p.End {
					delete(ps, n)
					left--
				}
			}
		}
	}
	return res, nil
}

// listPartitions lists every partition of the topics with its log start
// and high watermark, where the read of each begins, sorted.
func listPartitions(ctx context.Context, adm *kadm.Client, o KafkaReadOptions) ([]PartitionRead, []string, error) {
	ends, err := adm.ListEndOffsets(ctx, o.Topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("end offsets of %s: %w", strings.Join(o.Topics, ", "), err)
	}
	starts, err := adm.ListStartOffsets(ctx, o.Topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("start offsets of %s: %w", strings.Join(o.Topics, ", "), err)
	}
	var parts []PartitionRead
	var missing []string
	for _, t := range o.Topics {
		ps, ok := ends[t]
		if !ok || hasMissing(ps) {
			if !o.SkipMissing {
				return nil, nil, fmt.Errorf("topic %s: %w", t, ErrTopicNotFound)
			}
			missing = append(missing, t)
			continue
		}
		for n, e := range ps {
			if e.Err != nil {
				return nil, nil, fmt.Errorf("end offset of %s/%d: %w", t, n, e.Err)
			}
			st, ok := starts.Lookup(t, n)
			if !ok || st.Err != nil {
				return nil, nil, fmt.Errorf("start offset of %s/%d: %v", t, n, st.Err)
			}
			from := st.Offset
			if at, ok := o.Start[t][n]; ok {
				from = max(at, st.Offset)
			}
			parts = append(parts, PartitionRead{Topic: t, Partition: n, LogStart: st.Offset, From: from, End: e.Offset, Last: -1})
		}
	}
	sortPartitions(parts)
	return parts, missing, nil
}

// hasMissing reports kadm's marker of a topic that does not exist.
func hasMissing(ps map[int32]kadm.ListedOffset) bool {
	for _, p := range ps {
		if errors.Is(p.Err, kerr.UnknownTopicOrPartition) {
			return true
		}
	}
	return len(ps) == 0
}

func sortPartitions(ps []PartitionRead) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Topic != ps[j].Topic {
			return ps[i].Topic < ps[j].Topic
		}
		return ps[i].Partition < ps[j].Partition
	})
}

func topicsOf(m map[string]map[int32]*PartitionRead) []string {
	var ts []string
	for t, ps := range m {
		if len(ps) > 0 {
			ts = append(ts, t)
		}
	}
	sort.Strings(ts)
	return ts
}

// unfinished names the partitions not read to their end, and where.
func unfinished(m map[string]map[int32]*PartitionRead) string {
	var out []string
	for _, t := range topicsOf(m) {
		for n, p := range m[t] {
			out = append(out, fmt.Sprintf("%s/%d at %d of %d", t, n, p.Last, p.End))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// decodeRecord decodes a record in either mode of the CloudEvents Kafka
// binding: binary when it carries ce_specversion, else structured.
func decodeRecord(r *kgo.Record) (*Event, error) {
	if kafkaHeader(r, "ce_specversion") != "" {
		return DecodeBinary(func(name string) string {
			if c, ok := strings.CutPrefix(name, "ce-"); ok {
				name = "ce_" + c
			}
			return kafkaHeader(r, name)
		}, r.Value)
	}
	return Decode(r.Value)
}

// kafkaHeader is the value of a record's header, whatever case the
// producer wrote its name in ("" when absent).
func kafkaHeader(r *kgo.Record, name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Key, name) {
			return string(h.Value)
		}
	}
	return ""
}
