package promotion

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/customs-dev/customs/pkg/registries"
)

// errImageNotFound is returned when the digest is not in the registry.
var errImageNotFound = errors.New("image not found in the registry")

// registryClient reaches allow-listed registries, with remote options
// (credentials, transport) resolved once per host.
type registryClient struct {
	allow *registries.AllowList
	mu    sync.Mutex
	opts  map[string][]remote.Option
}

func newRegistryClient(allow *registries.AllowList) *registryClient {
	return &registryClient{allow: allow, opts: map[string][]remote.Option{}}
}

// repository parses "registry/repository" after checking the registry is
// allowed, and returns its remote options.
func (c *registryClient) repository(ctx context.Context, repo string) (name.Repository, []remote.Option, error) {
	ref, reg, err := c.allow.Reference(repo + ":x")
	if err != nil {
		return name.Repository{}, nil, err
	}
	c.mu.Lock()
	opts, ok := c.opts[reg.Host]
	if !ok {
		if opts, err = c.allow.RemoteOptions(reg); err != nil {
			c.mu.Unlock()
			return name.Repository{}, nil, err
		}
		c.opts[reg.Host] = opts
	}
	c.mu.Unlock()
	return ref.Context(), append([]remote.Option{remote.WithContext(ctx)}, opts...), nil
}

// verification is what the registry proved about a digest.
type verification struct {
	// Keys whose signature verified; the first is used to re-check at the
	// target.
	Keys []*PublicKey
	// Attested predicate types, by any of Keys.
	Attested []string
	// Scan is the newest complete vuln attestation by any of Keys, nil
	// when there is none.
	Scan *attestedScan
}

func (v verification) signedBy() []string {
	var out []string
	for _, k := range v.Keys {
		out = append(out, k.Name, k.ID)
	}
	return out
}

func checkOpts(k *PublicKey, opts []remote.Option) *cosign.CheckOpts {
	return &cosign.CheckOpts{
		SigVerifier:        k.Verifier,
		IgnoreTlog:         true,
		IgnoreSCT:          true,
		Offline:            true,
		ClaimVerifier:      cosign.SimpleClaimVerifier,
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(opts...)},
	}
}

// verifySignatures checks which keys have a valid signature for ref in its
// registry. "No signature" and "no matching signature" are answers, not
// errors; a registry that cannot be reached is an error.
func verifySignatures(ctx context.Context, ref name.Digest, opts []remote.Option, keys []*PublicKey) (verification, error) {
	var v verification
	for _, k := range keys {
		_, _, err := cosign.VerifyImageSignatures(ctx, ref, checkOpts(k, opts))
		var noMatch *cosign.ErrNoMatchingSignatures
		var noSigs *cosign.ErrNoSignaturesFound
		var notFound *cosign.ErrImageTagNotFound
		switch {
		case err == nil:
			v.Keys = append(v.Keys, k)
		case errors.As(err, &notFound) || isNotFound(err):
			return v, fmt.Errorf("%s: %w", ref, errImageNotFound)
		case errors.As(err, &noMatch), errors.As(err, &noSigs):
		default:
			return v, fmt.Errorf("verify signatures of %s with key %s: %w", ref, k.Name, err)
		}
	}
	return v, nil
}

// verifyAttestations adds the predicate types attested by v's keys.
func verifyAttestations(ctx context.Context, ref name.Digest, opts []remote.Option, v *verification) error {
	seen := map[string]bool{}
	for _, k := range v.Keys {
		co := checkOpts(k, opts)
		co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		atts, _, err := cosign.VerifyImageAttestations(ctx, ref, co)
		var noMatch *cosign.ErrNoMatchingAttestations
		var noSigs *cosign.ErrNoSignaturesFound
		switch {
		case err == nil:
		case errors.As(err, &noMatch), errors.As(err, &noSigs):
			continue
		default:
			return fmt.Errorf("verify attestations of %s with key %s: %w", ref, k.Name, err)
		}
		for _, att := range atts {
			pt := predicateType(att.Payload)
			if pt != "" && !seen[pt] {
				seen[pt] = true
				v.Attested = append(v.Attested, pt)
			}
			if pt == attestation.CosignVulnProvenanceV01 {
				v.addScan(att.Payload, k.Name)
			}
		}
	}
	return nil
}

// addScan keeps the vuln attestation in payload if it is complete and newer
// than the one already kept. One that cannot be read is passed over: the
// event's counts are then all there is, and the decision says so.
func (v *verification) addScan(payload func() ([]byte, error), key string) {
	env, err := payload()
	if err != nil {
		return
	}
	counts, finished, err := parseVulnAttestation(env)
	if err != nil {
		return
	}
	if v.Scan == nil || finished.After(v.Scan.FinishedOn) {
		v.Scan = &attestedScan{Counts: counts, FinishedOn: finished, Key: key}
	}
}

// predicateType reads the in-toto predicate type from a DSSE envelope.
func predicateType(payload func() ([]byte, error)) string {
	env, err := payload()
	if err != nil {
		return ""
	}
	var e struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(env, &e) != nil {
		return ""
	}
	body, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		return ""
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if json.Unmarshal(body, &st) != nil {
		return ""
	}
	return st.PredicateType
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// tagDigest returns the digest tag points at, or "" if there is no such tag.
func tagDigest(repo name.Repository, tag string, opts []remote.Option) (string, error) {
	d, err := remote.Head(repo.Tag(tag), opts...)
	switch {
	case isNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("resolve %s:%s: %w", repo, tag, err)
	}
	return d.Digest.String(), nil
}

// attachmentTag is cosign's tag for a digest's signatures ("sig") or
// attestations ("att").
func attachmentTag(digest, suffix string) string {
	return strings.Replace(digest, ":", "-", 1) + "." + suffix
}

// copyArtifact copies digest from src to dst by digest, then its cosign
// signature and attestation manifests under the same tags, so that cosign
// verifies at the target exactly as at the source. It reports whether the
// image itself had to be copied (false when dst already had it).
func copyArtifact(src name.Repository, srcOpts []remote.Option, dst name.Repository, dstOpts []remote.Option, digest string) (bool, error) {
	dstRef := dst.Digest(digest)
	copied := false
	if _, err := remote.Head(dstRef, dstOpts...); err != nil {
		if !isNotFound(err) {
			return false, fmt.Errorf("check %s: %w", dstRef, err)
		}
		desc, err := remote.Get(src.Digest(digest), srcOpts...)
		if err != nil {
			if isNotFound(err) {
				return false, fmt.Errorf("%s@%s: %w", src, digest, errImageNotFound)
			}
			return false, fmt.Errorf("get %s@%s: %w", src, digest, err)
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return false, fmt.Errorf("read index %s: %w", digest, err)
			}
			if err := remote.WriteIndex(dstRef, idx, dstOpts...); err != nil {
				return false, fmt.Errorf("write index %s: %w", dstRef, err)
			}
		} else {
			img, err := desc.Image()
			if err != nil {
				return false, fmt.Errorf("read image %s: %w", digest, err)
			}
			if err := remote.Write(dstRef, img, dstOpts...); err != nil {
				return false, fmt.Errorf("write image %s: %w", dstRef, err)
			}
		}
		copied = true
	}
	for _, suffix := range []string{"sig", "att"} {
		tag := attachmentTag(digest, suffix)
		desc, err := remote.Get(src.Tag(tag), srcOpts...)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return copied, fmt.Errorf("get %s:%s: %w", src, tag, err)
		}
		if have, err := tagDigest(dst, tag, dstOpts); err != nil {
			return copied, err
		} else if have == desc.Digest.String() {
			continue
		}
		img, err := desc.Image()
		if err != nil {
			return copied, fmt.Errorf("read %s:%s: %w", src, tag, err)
		}
		if err := remote.Write(dst.Tag(tag), img, dstOpts...); err != nil {
			return copied, fmt.Errorf("write %s:%s: %w", dst, tag, err)
		}
	}
	return copied, nil
}

// tagTarget points each tag at digest in dst.
func tagTarget(dst name.Repository, dstOpts []remote.Option, digest string, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	desc, err := remote.Get(dst.Digest(digest), dstOpts...)
	if err != nil {
		return fmt.Errorf("get %s@%s: %w", dst, digest, err)
	}
	for _, t := range tags {
		if err := remote.Tag(dst.Tag(t), desc, dstOpts...); err != nil {
			return fmt.Errorf("tag %s:%s: %w", dst, t, err)
		}
	}
	return nil
}
