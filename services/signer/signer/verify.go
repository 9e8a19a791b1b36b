package signer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// State is what the registry already holds for one digest: its signatures
// and attestations, and which of them this signer's key made. Checking it
// before signing makes a redelivered event a no-op.
type State struct {
	digest v1.Hash
	sigs   oci.Signatures
	atts   oci.Signatures
	// SignatureDigest is the .sig manifest digest when the digest already
	// carries a signature by this key, else empty.
	SignatureDigest string
	// Attested maps each predicate type URI attested by this key for this
	// digest to its attestation layer digest.
	Attested map[string]string
}

// Signed reports whether this key has signed the digest.
func (st *State) Signed() bool { return st.SignatureDigest != "" }

func (st *State) entity() *entity {
	return &entity{digest: st.digest, sigs: st.sigs, atts: st.atts}
}

// State fetches t's .sig and .att images and verifies each layer against
// the key: a signature counts only if it verifies and names t's digest, an
// attestation only if its DSSE envelope verifies and its subject is t's
// digest. Anyone can push layers to those tags; only ours count.
func (s *Signer) State(ctx context.Context, t Target) (*State, error) {
	h, err := v1.NewHash(t.Digest.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("digest %s: %w", t.Digest, err)
	}
	st := &State{digest: h, Attested: map[string]string{}}
	sigTag, err := ociremote.SignatureTag(t.Digest, t.ociOpts()...)
	if err != nil {
		return nil, fmt.Errorf("signature tag: %w", err)
	}
	if st.sigs, err = ociremote.Signatures(sigTag, t.ociOpts()...); err != nil {
		return nil, fmt.Errorf("fetch signatures of %s: %w", t.Digest, err)
	}
	attTag, err := ociremote.AttestationTag(t.Digest, t.ociOpts()...)
	if err != nil {
		return nil, fmt.Errorf("attestation tag: %w", err)
	}
	if st.atts, err = ociremote.Signatures(attTag, t.ociOpts()...); err != nil {
		return nil, fmt.Errorf("fetch attestations of %s: %w", t.Digest, err)
	}

	sigs, err := st.sigs.Get()
	if err != nil {
		return nil, fmt.Errorf("read signatures of %s: %w", t.Digest, err)
	}
	for _, sig := range sigs {
		if s.verifySignature(ctx, sig, h) {
			d, err := st.sigs.Digest()
			if err != nil {
				return nil, fmt.Errorf("signature manifest digest: %w", err)
			}
			st.SignatureDigest = d.String()
			break
		}
	}
	atts, err := st.atts.Get()
	if err != nil {
		return nil, fmt.Errorf("read attestations of %s: %w", t.Digest, err)
	}
	for _, att := range atts {
		if pt, ok := s.verifyAttestation(ctx, att, h); ok {
			if d, err := att.Digest(); err == nil {
				st.Attested[pt] = d.String()
			}
		}
	}
	return st, nil
}

func (s *Signer) verifySignature(ctx context.Context, sig oci.Signature, h v1.Hash) bool {
	b64, err := sig.Base64Signature()
	if err != nil || b64 == "" {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return false
	}
	pl, err := sig.Payload()
	if err != nil {
		return false
	}
	if err := s.key.SV.VerifySignature(bytes.NewReader(raw), bytes.NewReader(pl), options.WithContext(ctx)); err != nil {
		return false
	}
	var simple payload.SimpleContainerImage
	if err := json.Unmarshal(pl, &simple); err != nil {
		return false
	}
	return simple.Critical.Image.DockerManifestDigest == h.String()
}

// statement is the part of an in-toto statement the state check reads.
type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

func (s *Signer) verifyAttestation(ctx context.Context, att oci.Signature, h v1.Hash) (string, bool) {
	env, err := att.Payload()
	if err != nil {
		return "", false
	}
	if err := dsse.WrapVerifier(s.key.SV).VerifySignature(bytes.NewReader(env), nil, options.WithContext(ctx)); err != nil {
		return "", false
	}
	var e struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return "", false
	}
	body, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		return "", false
	}
	var stmt statement
	if err := json.Unmarshal(body, &stmt); err != nil || stmt.PredicateType == "" {
		return "", false
	}
	for _, sub := range stmt.Subject {
		if strings.EqualFold(sub.Digest[h.Algorithm], h.Hex) {
			return stmt.PredicateType, true
		}
	}
	return "", false
}
