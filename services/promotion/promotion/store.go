package promotion

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketEnvironments is the promotion service's durable state: what it
// knows of each digest (sources, tags, scan counts), the tag index, and
// what each application runs in each environment with its history.
const BucketEnvironments = "CUSTOMS_ENVIRONMENTS"

// maxDeploymentHistory bounds the rollback history kept per application.
const maxDeploymentHistory = 50

// source is one repository a digest was pushed to.
type source struct {
	Registry   string   `json:"registry"`
	Repository string   `json:"repository"`
	Tags       []string `json:"tags,omitempty"`
	// MovedTags pointed at another digest in this repository before.
	MovedTags []string `json:"moved_tags,omitempty"`
}

// artifactInfo is what the events told us about a digest. It is an index,
// not evidence: signatures and tags are checked in the registry before any
// promotion.
type artifactInfo struct {
	Digest        string         `json:"digest"`
	MediaType     string         `json:"media_type,omitempty"`
	Sources       []*source      `json:"sources,omitempty"`
	GitSHA        string         `json:"git_sha,omitempty"`
	Semver        string         `json:"semver,omitempty"`
	Scanned       bool           `json:"scanned,omitempty"`
	Counts        map[string]int `json:"counts,omitempty"`
	Signed        bool           `json:"signed,omitempty"`
	CorrelationID string         `json:"correlation_id,omitempty"`
	// Environments the digest has been promoted to.
	Environments []string `json:"environments,omitempty"`
}

func (a *artifactInfo) source(registry, repository string) *source {
	for _, s := range a.Sources {
		if s.Registry == registry && s.Repository == repository {
			return s
		}
	}
	s := &source{Registry: registry, Repository: repository}
	a.Sources = append(a.Sources, s)
	return s
}

func (s *source) addTag(tag string) { s.Tags = addUnique(s.Tags, tag) }

// deployment is what one application runs in one environment.
type deployment struct {
	Environment string    `json:"environment"`
	Application string    `json:"application"`
	Digest      string    `json:"digest"`
	Reference   string    `json:"reference"`
	Tags        []string  `json:"tags,omitempty"`
	PromotedAt  time.Time `json:"promoted_at"`
	Actor       string    `json:"actor"`
	RuleID      string    `json:"rule_id"`
	Reason      string    `json:"reason,omitempty"`
	EventID     string    `json:"event_id"`
	// Generation counts promotions of this application in this
	// environment; it makes each promotion's event id unique and
	// deterministic.
	Generation int `json:"generation"`
	// History holds earlier deployments, newest first, for rollback.
	History []pastDeployment `json:"history,omitempty"`
}

type pastDeployment struct {
	Digest     string    `json:"digest"`
	PromotedAt time.Time `json:"promoted_at"`
}

// store wraps the KV bucket.
type store struct {
	kv jetstream.KeyValue
}

// ensureStore creates or opens the bucket.
func ensureStore(ctx context.Context, js jetstream.JetStream, replicas int) (*store, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketEnvironments,
		Description: "Customs promotion state: artifacts, tag index, environments",
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketEnvironments, err)
	}
	return &store{kv: kv}, nil
}

func artifactKey(digest string) string { return "a." + strings.Replace(digest, ":", ".", 1) }

func tagKey(registry, repository, tag string) string {
	h := sha256.Sum256([]byte(registry + "/" + repository + ":" + tag))
	return "t." + hex.EncodeToString(h[:16])
}

func deploymentKey(env, app string) string {
	return "d." + env + "." + base64.RawURLEncoding.EncodeToString([]byte(app))
}

// get decodes key into v; it returns revision 0 when the key is absent.
func (s *store) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

// put writes v with optimistic concurrency: rev 0 creates, otherwise the
// key must still be at rev. A conflict means another replica wrote first;
// the caller's error makes the message or command retry.
func (s *store) put(ctx context.Context, key string, v any, rev uint64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, b)
	} else {
		_, err = s.kv.Update(ctx, key, b, rev)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// update applies fn to the decoded value at key and writes it back,
// retrying on a concurrent write.
func update[T any](ctx context.Context, s *store, key string, fn func(v *T, exists bool) (bool, error)) error {
	for attempt := 0; ; attempt++ {
		var v T
		rev, err := s.get(ctx, key, &v)
		if err != nil {
			return err
		}
		changed, err := fn(&v, rev != 0)
		if err != nil || !changed {
			return err
		}
		err = s.put(ctx, key, &v, rev)
		if err == nil {
			return nil
		}
		if attempt >= 3 || (!errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err)) {
			return err
		}
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func (s *store) artifact(ctx context.Context, digest string) (*artifactInfo, error) {
	var a artifactInfo
	rev, err := s.get(ctx, artifactKey(digest), &a)
	if err != nil || rev == 0 {
		return nil, err
	}
	return &a, nil
}

func (s *store) deployment(ctx context.Context, env, app string) (*deployment, uint64, error) {
	var d deployment
	rev, err := s.get(ctx, deploymentKey(env, app), &d)
	if err != nil || rev == 0 {
		return nil, rev, err
	}
	return &d, rev, nil
}

// recordTag points registry/repository:tag at digest and returns the digest
// it pointed at before ("" if none).
func (s *store) recordTag(ctx context.Context, registry, repository, tag, digest string) (string, error) {
	var prev string
	err := update(ctx, s, tagKey(registry, repository, tag), func(v *string, _ bool) (bool, error) {
		prev = *v
		if *v == digest {
			return false, nil
		}
		*v = digest
		return true, nil
	})
	return prev, err
}

func addUnique(list []string, v string) []string {
	if v == "" || slices.Contains(list, v) {
		return list
	}
	list = append(list, v)
	slices.Sort(list)
	return list
}
