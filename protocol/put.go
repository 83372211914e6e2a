package protocol

// PutHeader writes a header for a body of bodyLen bytes into h[:HeaderLen],
// for callers that reserve the header space before the body is known.
func PutHeader(h []byte, bodyLen int, ver int16, op, seq int32) {
	putHeader(h[:HeaderLen], bodyLen, ver, op, seq)
}
