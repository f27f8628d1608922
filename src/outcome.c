/* placeholder: outcome */
