package vulndb

import (
	"fmt"
	"sync"

	trivydb "github.com/aquasecurity/trivy/pkg/db"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	"github.com/google/go-containerregistry/pkg/name"
)

// trivy-db keeps one DB handle per process in a package global. Every user
// of that handle in this process goes through handle: scans hold the read
// lock for as long as they query the DB, and opening a new DB (an update, or
// building one) takes the write lock, so a swap never pulls the DB from under
// a scan in flight.
var handle struct {
	mu  sync.RWMutex
	dir string // directory of the DB that is open, "" when none
}

// RLock holds the DB open for a scan. Release it with RUnlock.
func RLock() { handle.mu.RLock() }

// RUnlock releases RLock.
func RUnlock() { handle.mu.RUnlock() }

// Open makes the DB in dir (holding trivy.db and metadata.json) the
// process's vulnerability DB, read-only. It waits for scans in flight and
// closes the DB it replaces.
func Open(dir string) error {
	handle.mu.Lock()
	defer handle.mu.Unlock()
	return openLocked(dir)
}

// OpenDir returns the directory of the DB that is open, or "".
func OpenDir() string {
	handle.mu.RLock()
	defer handle.mu.RUnlock()
	return handle.dir
}

func openLocked(dir string) error {
	if handle.dir != "" {
		if err := trivydb.Close(); err != nil {
			return fmt.Errorf("close vulnerability DB %s: %w", handle.dir, err)
		}
		handle.dir = ""
	}
	if err := trivydb.Init(dir); err != nil {
		return fmt.Errorf("open vulnerability DB %s: %w", dir, err)
	}
	handle.dir = dir
	return nil
}

// InitJavaDB makes the Java DB under cacheDir/java-db the process's Java
// DB, downloading it from repos first unless the copy there is still
// fresh (Trivy's own rule: three days). Trivy's Java DB client is a
// package global too, read by the JAR analyzer during scans, so it is set
// under the same lock.
func InitJavaDB(cacheDir string, repos []name.Reference, opts ftypes.RegistryOptions) error {
	handle.mu.Lock()
	defer handle.mu.Unlock()
	javadb.Init(cacheDir, repos, false, true, opts)
	if err := javadb.Update(); err != nil {
		return fmt.Errorf("java DB from %v: %w", repos, err)
	}
	return nil
}
