package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	rekorclient "github.com/sigstore/rekor/pkg/client"
	rekorgen "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Annotation keys recorded in the signed payload's "optional" section, so
// `cosign verify -a dev.customs.policy=...` can require them.
const (
	AnnotationScanner        = "dev.customs.scanner"
	AnnotationScannerVersion = "dev.customs.scanner.version"
	AnnotationDBVersion      = "dev.customs.scanner.db-version"
	AnnotationPolicy         = "dev.customs.policy"
)

// Signer signs and attests images in cosign's standard registry format
// (the sha256-<hex>.sig and .att tags) with one loaded key.
type Signer struct {
	key   *Key
	rekor *rekorgen.Rekor
	dd    mutate.DupeDetector
}

// NewSigner returns a Signer. With rekorURL empty nothing is uploaded to a
// transparency log, which is the default: private deployments usually
// have no Rekor, and verification then needs --insecure-ignore-tlog.
func NewSigner(key *Key, rekorURL string) (*Signer, error) {
	s := &Signer{key: key, dd: cremote.NewDupeDetector(key.SV)}
	if rekorURL != "" {
		rc, err := rekorclient.GetRekorClient(rekorURL, rekorclient.WithUserAgent("customs-signer"))
		if err != nil {
			return nil, fmt.Errorf("rekor client %s: %w", rekorURL, err)
		}
		s.rekor = rc
	}
	return s, nil
}

// Key returns the signing key.
func (s *Signer) Key() *Key { return s.key }

// Target is one image digest in an allowed registry.
type Target struct {
	Digest name.Digest
	// Remote carries auth and transport for the registry.
	Remote []remote.Option
}

func (t Target) ociOpts() []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(t.Remote...)}
}

// entity is the image as cosign's mutate package sees it, with the
// signatures and attestations already fetched by State, so attaching does
// not fetch them a second time.
type entity struct {
	digest v1.Hash
	sigs   oci.Signatures
	atts   oci.Signatures
}

var _ oci.SignedEntity = (*entity)(nil)

func (e *entity) Digest() (v1.Hash, error)              { return e.digest, nil }
func (e *entity) Signatures() (oci.Signatures, error)   { return e.sigs, nil }
func (e *entity) Attestations() (oci.Signatures, error) { return e.atts, nil }
func (e *entity) Attachment(n string) (oci.File, error) {
	return nil, fmt.Errorf("attachment %q: not supported", n)
}

// Sign signs t's digest with the annotations and pushes the signature to
// the .sig tag, next to any signatures already there. It returns the digest
// of the signature manifest. st must come from State for the same target.
func (s *Signer) Sign(ctx context.Context, t Target, st *State, annotations map[string]any) (string, error) {
	pl, err := (&payload.Cosign{Image: t.Digest, Annotations: annotations}).MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("signature payload: %w", err)
	}
	raw, err := s.key.SV.SignMessage(bytes.NewReader(pl), options.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", t.Digest, err)
	}
	var opts []static.Option
	if s.rekor != nil {
		h := sha256.New()
		h.Write(pl)
		entry, err := cosign.TLogUpload(ctx, s.rekor, raw, h, s.key.PublicPEM)
		if err != nil {
			return "", fmt.Errorf("rekor upload for %s: %w", t.Digest, err)
		}
		opts = append(opts, static.WithBundle(cbundle.EntryToBundle(entry)))
	}
	sig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(raw), opts...)
	if err != nil {
		return "", fmt.Errorf("signature layer: %w", err)
	}
	se, err := mutate.AttachSignatureToEntity(st.entity(), sig, mutate.WithDupeDetector(s.dd))
	if err != nil {
		return "", fmt.Errorf("attach signature: %w", err)
	}
	sigs, err := se.Signatures()
	if err != nil {
		return "", fmt.Errorf("signature image: %w", err)
	}
	if err := ociremote.WriteSignatures(t.Digest.Repository, se, t.ociOpts()...); err != nil {
		return "", fmt.Errorf("push signature for %s: %w", t.Digest, err)
	}
	d, err := sigs.Digest()
	if err != nil {
		return "", fmt.Errorf("signature manifest digest: %w", err)
	}
	st.sigs = sigs
	return d.String(), nil
}
