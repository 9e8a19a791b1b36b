package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// CloudEvents media types (spec v1.0, HTTP binding).
const (
	CloudEventsJSON  = "application/cloudevents+json"
	CloudEventsBatch = "application/cloudevents-batch+json"
	// CustomsPushedType is the CloudEvents type of a push in Customs' own
	// generic shape.
	CustomsPushedType = "dev.customs.artifact.pushed"
)

// CloudEvent is the part of a CloudEvents v1.0 event that ingest reads.
type CloudEvent struct {
	ID              string
	Source          string
	Type            string
	Subject         string
	Time            time.Time
	DataContentType string
	Data            []byte
	// Extensions holds the other attributes as strings (e.g. Harbor's
	// "operator").
	Extensions map[string]string
}

// IsCloudEvent reports whether a request is a CloudEvent in either
// content mode.
func IsCloudEvent(h http.Header, body []byte) bool {
	if h.Get("Ce-Specversion") != "" {
		return true
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == CloudEventsJSON || mt == CloudEventsBatch {
		return true
	}
	// Some senders post structured events as plain application/json.
	var probe struct {
		SpecVersion *string `json:"specversion"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.SpecVersion != nil
}

// ParseCloudEvent reads one CloudEvent in binary content mode (attributes
// in ce-* headers, data in the body) or structured mode (the whole event
// as JSON). The headers may come from HTTP or NATS.
func ParseCloudEvent(h http.Header, body []byte) (CloudEvent, error) {
	if h.Get("Ce-Specversion") != "" {
		return parseBinaryCloudEvent(h, body)
	}
	ct := h.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return CloudEvent{}, fmt.Errorf("%w: Content-Type %q", ErrUnsupportedMediaType, ct)
		}
		switch mt {
		case CloudEventsJSON, "application/json":
		case CloudEventsBatch:
			return CloudEvent{}, fmt.Errorf("%w: batched CloudEvents are not supported; send one event per request", ErrUnsupportedMediaType)
		default:
			return CloudEvent{}, fmt.Errorf("%w: Content-Type %q is neither %s nor a binary-mode CloudEvent (ce-specversion header)", ErrUnsupportedMediaType, ct, CloudEventsJSON)
		}
	}
	return parseStructuredCloudEvent(body)
}

func parseBinaryCloudEvent(h http.Header, body []byte) (CloudEvent, error) {
	ce := CloudEvent{
		ID:              h.Get("Ce-Id"),
		Source:          h.Get("Ce-Source"),
		Type:            h.Get("Ce-Type"),
		Subject:         h.Get("Ce-Subject"),
		DataContentType: h.Get("Content-Type"),
		Data:            body,
		Extensions:      map[string]string{},
	}
	if v := h.Get("Ce-Specversion"); v != "1.0" {
		return CloudEvent{}, fmt.Errorf("%w: ce-specversion %q, want 1.0", ErrMalformed, v)
	}
	if t := h.Get("Ce-Time"); t != "" {
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return CloudEvent{}, fmt.Errorf("%w: ce-time %q is not RFC 3339", ErrMalformed, t)
		}
		ce.Time = at
	}
	for k, v := range h {
		lk := strings.ToLower(k)
		name, ok := strings.CutPrefix(lk, "ce-")
		if !ok || len(v) == 0 {
			continue
		}
		switch name {
		case "id", "source", "type", "subject", "time", "specversion":
		default:
			ce.Extensions[name] = v[0]
		}
	}
	return ce, ce.validate()
}

func parseStructuredCloudEvent(body []byte) (CloudEvent, error) {
	var raw map[string]json.RawMessage
	if err := decodeStrict(body, &raw); err != nil {
		return CloudEvent{}, err
	}
	if raw == nil {
		return CloudEvent{}, fmt.Errorf("%w: the CloudEvent is not a JSON object", ErrMalformed)
	}
	str := func(name string) (string, error) {
		v, ok := raw[name]
		if !ok {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("%w: attribute %q must be a string", ErrMalformed, name)
		}
		return s, nil
	}
	var ce CloudEvent
	var err error
	fields := []struct {
		name string
		dst  *string
	}{{"id", &ce.ID}, {"source", &ce.Source}, {"type", &ce.Type}, {"subject", &ce.Subject}, {"datacontenttype", &ce.DataContentType}}
	for _, f := range fields {
		if *f.dst, err = str(f.name); err != nil {
			return CloudEvent{}, err
		}
	}
	spec, err := str("specversion")
	if err != nil {
		return CloudEvent{}, err
	}
	if spec != "1.0" {
		return CloudEvent{}, fmt.Errorf("%w: specversion %q, want 1.0", ErrMalformed, spec)
	}
	t, err := str("time")
	if err != nil {
		return CloudEvent{}, err
	}
	if t != "" {
		if ce.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return CloudEvent{}, fmt.Errorf("%w: time %q is not RFC 3339", ErrMalformed, t)
		}
	}
	switch {
	case raw["data_base64"] != nil:
		var b64 string
		if err := json.Unmarshal(raw["data_base64"], &b64); err != nil {
			return CloudEvent{}, fmt.Errorf("%w: data_base64 must be a string", ErrMalformed)
		}
		if ce.Data, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return CloudEvent{}, fmt.Errorf("%w: data_base64: %w", ErrMalformed, err)
		}
	case raw["data"] != nil:
		ce.Data = raw["data"]
	}
	ce.Extensions = map[string]string{}
	for k, v := range raw {
		switch k {
		case "id", "source", "type", "subject", "time", "specversion", "datacontenttype", "data", "data_base64", "dataschema":
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			ce.Extensions[k] = s
		}
	}
	return ce, ce.validate()
}

func (ce CloudEvent) validate() error {
	var missing []string
	if ce.ID == "" {
		missing = append(missing, "id")
	}
	if ce.Source == "" {
		missing = append(missing, "source")
	}
	if ce.Type == "" {
		missing = append(missing, "type")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: CloudEvent without %s", ErrMalformed, strings.Join(missing, ", "))
	}
	if ce.DataContentType != "" {
		mt, _, err := mime.ParseMediaType(ce.DataContentType)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "text/json") {
			return fmt.Errorf("%w: data content type %q is not JSON", ErrMalformed, ce.DataContentType)
		}
	}
	return nil
}

// dataJSON decodes the event's data as JSON into v.
func (ce CloudEvent) dataJSON(v any) error {
	if len(bytes.TrimSpace(ce.Data)) == 0 {
		return fmt.Errorf("%w: %s event %q has no data", ErrMalformed, ce.Type, ce.ID)
	}
	if err := json.Unmarshal(ce.Data, v); err != nil {
		return fmt.Errorf("%w: %s event %q data: %w", ErrMalformed, ce.Type, ce.ID, err)
	}
	return nil
}

func (ce CloudEvent) occurredAt() time.Time {
	if ce.Time.IsZero() {
		return time.Now().UTC()
	}
	return ce.Time
}

// CloudEventsConfig configures the generic CloudEvents receiver.
type CloudEventsConfig struct {
	// Token is the bearer token senders present.
	Token string
}

// CloudEvents receives CloudEvents in either content mode. It understands
// Customs' own type (dev.customs.artifact.pushed) and Harbor's
// harbor.artifact.pushed; other types are ignored.
type CloudEvents struct {
	cfg CloudEventsConfig
}

// NewCloudEvents returns the receiver.
func NewCloudEvents(cfg CloudEventsConfig) (*CloudEvents, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("cloudevents receiver: a bearer token is required")
	}
	return &CloudEvents{cfg: cfg}, nil
}

// Name implements Receiver.
func (c *CloudEvents) Name() string { return "cloudevents" }

// Authenticate implements Receiver.
func (c *CloudEvents) Authenticate(r *http.Request, _ []byte) error {
	return checkBearer(r, c.cfg.Token)
}

// customsPushedData is the data of a dev.customs.artifact.pushed event.
// Either reference ("host/repo:tag" or "host/repo@digest") or registry and
// repository name the artifact.
type customsPushedData struct {
	Reference  string `json:"reference"`
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	MediaType  string `json:"media_type"`
	Tag        string `json:"tag"`
	Actor      string `json:"actor"`
	Size       int64  `json:"size"`
}

// Parse implements Receiver.
func (c *CloudEvents) Parse(r *http.Request, body []byte) (Parsed, error) {
	ce, err := ParseCloudEvent(r.Header, body)
	if err != nil {
		return Parsed{}, err
	}
	switch ce.Type {
	case CustomsPushedType:
		p, err := parseCustomsPushed(ce)
		if err != nil {
			return Parsed{}, err
		}
		return Parsed{Pushes: []Push{p}}, nil
	case HarborCloudEventPushed:
		return parseHarborCloudEvent(ce, "")
	default:
		return Parsed{Ignored: []Ignored{{EventID: ce.ID, Action: ce.Type, Reason: fmt.Sprintf("ignored: CloudEvent type %q is not a push Customs understands", ce.Type)}}}, nil
	}
}

func parseCustomsPushed(ce CloudEvent) (Push, error) {
	var d customsPushedData
	if err := ce.dataJSON(&d); err != nil {
		return Push{}, err
	}
	host, repo, digest, tag := d.Registry, d.Repository, d.Digest, d.Tag
	if d.Reference != "" {
		ref, err := artifactref.Parse(d.Reference)
		if err != nil {
			return Push{}, fmt.Errorf("%w: reference: %w", ErrMalformed, err)
		}
		if ref.Registry == "" {
			return Push{}, fmt.Errorf("%w: reference %q has no registry host", ErrMalformed, d.Reference)
		}
		if digest != "" && ref.Digest != "" && digest != ref.Digest {
			return Push{}, fmt.Errorf("%w: digest %q disagrees with the reference's %q", ErrMalformed, digest, ref.Digest)
		}
		host, repo = ref.Registry, ref.Repository
		if digest == "" {
			digest = ref.Digest
		}
		if tag == "" {
			tag = ref.Tag
		}
	}
	a, err := artifact(host, repo, digest, d.MediaType, tag)
	if err != nil {
		return Push{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if d.MediaType != "" && !IsManifestMediaType(d.MediaType) {
		return Push{}, fmt.Errorf("%w: media type %q is not an image manifest or index", ErrMalformed, d.MediaType)
	}
	if d.Size < 0 {
		return Push{}, fmt.Errorf("%w: negative size", ErrMalformed)
	}
	return Push{Artifact: a, SourceEventID: ce.Source + "|" + ce.ID, Actor: d.Actor, Size: d.Size, OccurredAt: ce.occurredAt()}, nil
}

var _ Receiver = (*CloudEvents)(nil)
