package vulndb

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestArchiveIsReproducible(t *testing.T) {
	t.Parallel()
	var archives [][]byte
	for _, d := range []string{"a", "b", "c", "d", "e", "f"} {
		dir := filepath.Join(t.TempDir(), d)
		if _, err := Build(dir, Default()); err != nil {
			t.Fatal(err)
		}
		a, err := Archive(dir)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, a)
	}
	for i, a := range archives[1:] {
		if !bytes.Equal(archives[0], a) {
			t.Errorf("build %d of the same advisories gave a different DB archive", i+1)
		}
	}
}
