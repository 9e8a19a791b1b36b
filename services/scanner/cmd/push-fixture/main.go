// Command push-fixture pushes one of the scanner's fixture images (real
// package metadata that matches the development vulnerability DB) to a
// registry, so a newcomer can watch an image with known findings move
// through `make run`:
//
//	go run ./services/scanner/cmd/push-fixture -image alpine localhost:5000/team/app:v1.2.3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/customs-dev/customs/services/scanner/fixtures"
)

func main() {
	kind := flag.String("image", "alpine", "fixture to push: alpine, debian, go (an Alpine root plus a Go binary; needs the go tool) or jar (log4j-core 2.14.1 and commons-text 1.9)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: push-fixture [-image alpine|debian|go] <registry/repository:tag>")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*kind, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "push-fixture:", err)
		os.Exit(1)
	}
}

func run(kind, ref string) error {
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return fmt.Errorf("reference %q: %w", ref, err)
	}
	var (
		img v1.Image
		err error
	)
	switch kind {
	case "alpine":
		img, err = fixtures.Alpine()
	case "debian":
		img, err = fixtures.Debian()
	case "go":
		img, err = goImage()
	case "jar":
		img, err = fixtures.JarImage()
	default:
		return fmt.Errorf("unknown fixture %q: want alpine, debian, go or jar", kind)
	}
	if err != nil {
		return err
	}
	digest, err := fixtures.Push(context.Background(), img, ref)
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref, digest)
	return nil
}

// goImage is an Alpine root plus a Go binary whose build info records a
// golang.org/x/text version with a HIGH advisory in the development DB.
func goImage() (v1.Image, error) {
	dir, err := os.MkdirTemp("", "push-fixture-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	bin, err := fixtures.GoBinary(context.Background(), dir)
	if err != nil {
		return nil, fmt.Errorf("build the Go fixture binary: %w", err)
	}
	layer, err := fixtures.Layer(append(fixtures.AlpineFiles(), fixtures.GoBinaryFiles(bin)...)...)
	if err != nil {
		return nil, err
	}
	return fixtures.Image(layer)
}
