// The authorization matrix's rows for socialink and e2e (see authz_matrix.js).
import { matrix } from './authz_matrix.js';

matrix(['socialink', 'e2e']);
