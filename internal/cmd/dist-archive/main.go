// Command dist-archive writes one release archive of a directory, the same
// bytes on every machine: scripts/dist.sh calls it for each platform.
//
//	dist-archive -epoch 1733300000 -o dist/NAME.tar.gz dist/NAME
//	dist-archive -epoch 1733300000 -o dist/NAME.zip dist/NAME
//
// tar and zip as installed differ between systems (GNU or BSD tar, zip's
// local-time DOS dates, directory read order, umask, owners), so archives
// made with them depend on the machine; this one depends only on the files'
// contents: entries in byte order of their names under one top-level
// directory named like the archive, every time stamp the given epoch in UTC,
// owner 0:0 with no names, mode 0755 for directories and executables and
// 0644 for the rest, and a gzip header with no name and no time.
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	epoch := flag.Int64("epoch", -1, "time stamp of every entry, in seconds since 1970 (SOURCE_DATE_EPOCH; dist.sh passes the commit time)")
	out := flag.String("o", "", "the archive to write: NAME.tar.gz or NAME.zip")
	flag.Parse()
	log.SetFlags(0)
	if *epoch < 0 || *out == "" || flag.NArg() != 1 {
		log.Fatal("usage: dist-archive -epoch SECONDS -o OUT.tar.gz|OUT.zip DIR")
	}
	if err := run(flag.Arg(0), *out, time.Unix(*epoch, 0).UTC()); err != nil {
		log.Fatalf("dist-archive: %v", err)
	}
}

// entry is one file or directory of the archive.
type entry struct {
	name string // slash-separated, under the top-level directory
	path string // on disk
	dir  bool
	mode fs.FileMode // permission bits only
}

func run(dir, out string, mtime time.Time) error {
	entries, err := collect(dir)
	if err != nil {
		return err
	}
	f, err := os.Create(out) //nolint:gosec // the path dist.sh names, under dist/
	if err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(out, ".tar.gz"):
		err = writeTarGz(f, entries, mtime)
	case strings.HasSuffix(out, ".zip"):
		err = writeZip(f, entries, mtime)
	default:
		err = fmt.Errorf("%s: want a .tar.gz or .zip name", out)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(out)
	}
	return err
}

// collect lists dir and everything under it, sorted by name, with the modes
// the archive gives them. Only directories and regular files are expected:
// anything else is an error rather than something to archive by accident.
func collect(dir string) ([]entry, error) {
	top := filepath.Base(filepath.Clean(dir))
	var entries []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		e := entry{name: path.Join(top, filepath.ToSlash(rel)), path: p}
		switch {
		case d.IsDir():
			e.dir, e.mode = true, 0o755
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			// The executable bit is all that is kept of the file's mode
			// (the binary is built executable; Windows has none, so .exe
			// names count too).
			e.mode = 0o644
			if info.Mode()&0o111 != 0 || strings.HasSuffix(p, ".exe") {
				e.mode = 0o755
			}
		default:
			return fmt.Errorf("%s: neither a regular file nor a directory", p)
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

func writeTarGz(w io.Writer, entries []entry, mtime time.Time) error {
	// gzip.NewWriter's header carries no name and a zero time unless set.
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		// USTAR: only the modification time (PAX would let access and change
		// times in), which USTAR holds until 2242.
		h := &tar.Header{Name: e.name, Mode: int64(e.mode), ModTime: mtime, Format: tar.FormatUSTAR}
		var size int64
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		} else {
			info, err := os.Stat(e.path)
			if err != nil {
				return err
			}
			h.Typeflag, size = tar.TypeReg, info.Size()
			h.Size = size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if !e.dir {
			if err := copyFile(tw, e.path, size); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, entries []entry, mtime time.Time) error {
	zw := zip.NewWriter(w)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		mode := e.mode
		if e.dir {
			h.Name, h.Method, mode = e.name+"/", zip.Store, mode|fs.ModeDir
		}
		h.SetMode(mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if !e.dir {
			info, err := os.Stat(e.path)
			if err != nil {
				return err
			}
			if err := copyFile(fw, e.path, info.Size()); err != nil {
				return err
			}
		}
	}
	return zw.Close()
}

// copyFile copies the file at p, which must still be size bytes long.
func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p) //nolint:gosec // a file of the staged directory dist.sh made
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only: its Close reports nothing of use
	n, err := io.Copy(w, f)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", p, err)
	case n != size:
		return errors.New(p + ": changed size while being archived")
	}
	return nil
}
