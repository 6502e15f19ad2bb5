package chaincode

import "fmt"

// Error codes, identical to sn_service/contract.py and contract/README.md.
// Clients switch on the code; the text after it is for people.
const (
	CodeInvalidArgument     = "INVALID_ARGUMENT"
	CodeUnknownFunction     = "UNKNOWN_FUNCTION"
	CodeTaskNotFound        = "TASK_NOT_FOUND"
	CodeSpecMismatch        = "SPEC_MISMATCH"
	CodeFingerprintMismatch = "FINGERPRINT_MISMATCH"
	CodeIdentityMismatch    = "IDENTITY_MISMATCH"
	CodeIdentityInUse       = "IDENTITY_IN_USE"
	CodeNodeNotRegistered   = "NODE_NOT_REGISTERED"
	CodeNodeNotActive       = "NODE_NOT_ACTIVE"
	CodeTaskDone            = "TASK_DONE"
	CodeRoundNotFound       = "ROUND_NOT_FOUND"
	CodeWrongRound          = "WRONG_ROUND"
	CodeRoundClosed         = "ROUND_CLOSED"
	CodeDuplicateSubmission = "DUPLICATE_SUBMISSION"
	CodeRoundNotOpen        = "ROUND_NOT_OPEN"
	CodeNotClosable         = "NOT_CLOSABLE"
	CodeRoundNotClosed      = "ROUND_NOT_CLOSED"
	CodeNotLeader           = "NOT_LEADER"
	CodeDeadlineNotPassed   = "DEADLINE_NOT_PASSED"
	CodeNotSecure           = "NOT_SECURE"
	CodeNotContributor      = "NOT_CONTRIBUTOR"
	CodeNotMasked           = "NOT_MASKED"
	CodeTooFewSurvivors     = "TOO_FEW_SURVIVORS"
	CodeNotSealed           = "NOT_SEALED"
)

// ContractError is a transaction refused by the contract.
//
// Its text is "CODE: message", so a client reading the peer's error string
// finds the code before the first colon.
type ContractError struct {
	Code    string
	Message string
}

func (e *ContractError) Error() string {
	return e.Code + ": " + e.Message
}

// refuse builds a ContractError with a formatted message.
func refuse(code, format string, args ...any) error {
	return &ContractError{Code: code, Message: fmt.Sprintf(format, args...)}
}
