//go:build !lightbox_noleaninit

package initbin

import _ "embed"

//go:embed lightbox-init.linux-amd64.gz
var compressed []byte

//go:embed lightbox-init.linux-amd64.sha256
var sum string
