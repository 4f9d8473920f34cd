package nqn

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{
		Discovery,
		"nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000c1c1",
		"nqn.2024-01.io.strata:vol1",
		"nqn.2024-01.io.strata:pool/vol:with:colons",
		"nqn.1999-12.com.example",
		"nqn.2024-01.io.strata:" + strings.Repeat("x", MaxLen-len("nqn.2024-01.io.strata:")),
	} {
		require.NoError(t, Validate(ok), ok)
	}
	for _, bad := range []string{
		"",
		"iqn.2024-01.io.strata:vol1",
		"nqn.2024-13.io.strata:vol1",
		"nqn.24-01.io.strata:vol1",
		"nqn.2024-01.:vol1",
		"nqn.2024-01.-bad.domain",
		"nqn.2024-01.io.strata:" + strings.Repeat("x", MaxLen),
		"nqn.2014-08.org.nvmexpress:uuid:not-a-uuid",
		"nqn.2024-01.io.strata:tab\there",
		"nqn.2024-01.io.strata:\xff",
	} {
		err := Validate(bad)
		require.ErrorIs(t, err, ErrInvalid, "%q", bad)
	}
}

func TestFromUUID(t *testing.T) {
	u := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	s := FromUUID(u)
	require.Equal(t, "nqn.2014-08.org.nvmexpress:uuid:deadbeef-0102-0304-0506-0708090a0b0c", s)
	require.NoError(t, Validate(s))
}
