package lightbox

// Version is the version of lightbox.
const Version = "0.1.0-dev"
