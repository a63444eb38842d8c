// The authorization matrix's rows for Spark's REST API, sup, spark and mrezhen (see authz_matrix.js).
import { matrix } from './authz_matrix.js';

matrix(['rest', 'sup', 'spark', 'mrezhen']);
