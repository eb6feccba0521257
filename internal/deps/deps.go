package deps
import (
 _ "golang.org/x/sys/unix"
 _ "github.com/google/go-cmp/cmp"
 _ "github.com/klauspost/compress/zstd"
 _ "pgregory.net/rapid"
)
