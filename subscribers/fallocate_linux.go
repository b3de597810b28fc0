package subscribers

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fallocate allocates the blocks of f's bytes [off, off+n) (fallocate(2),
// mode 0: the file grows to off+n if it is shorter, and keeps what it
// holds), so that a write there needs no more space. Where the file
// system cannot (EOPNOTSUPP, ENOSYS), its error matches
// errors.ErrUnsupported.
func fallocate(f *os.File, off, n int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, off, n)
		if err != unix.EINTR {
			return os.NewSyscallError("fallocate", err)
		}
	}
}

// holes returns the holes among f's first size bytes, in order: the
// ranges that read as zeros with no block of their own (never written, or
// made holes by a sparse copy), as lseek(2)'s SEEK_HOLE reports them. On
// ext4 and xfs that includes blocks allocated but never written (an
// unwritten extent: fallocate without the write). A file system that does
// not tell reports none (SEEK_HOLE finds the end of the file).
func holes(f *os.File, size int64) ([]span, error) {
	var hs []span
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_HOLE)
		if errors.Is(err, unix.ENXIO) { // off is past the end
			break
		}
		if err != nil {
			return nil, err
		}
		if start >= size {
			break
		}
		end, err := f.Seek(start, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // a hole up to the end
			end = size
		case err != nil:
			return nil, err
		}
		end = min(end, size)
		hs = append(hs, span{start, end})
		off = end
	}
	return hs, nil
}
